/*
 * util.c - small shared pieces of the ctx command-line tool: errors, number
 * and time parsing, time formatting, escaping bytes for people, and the
 * ctx:// URL. Each is pure (no global state) so that tests call them
 * directly.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "cli.h"
#include "json.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ctx: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return false;
	uint64_t x = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

uint64_t cli_now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* "-30s", "-5m", "-2h", "-1d": an age before now. */
static bool parse_age(const char *s, uint64_t now_us, uint64_t *out)
{
	uint64_t n = 0, unit;
	const char *p = s + 1;
	if (!isdigit((unsigned char)*p))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		if (n > UINT64_MAX / 10 - 1)
			return false;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case 's':
		unit = 1000000ull;
		break;
	case 'm':
		unit = 60000000ull;
		break;
	case 'h':
		unit = 3600000000ull;
		break;
	case 'd':
		unit = 86400000000ull;
		break;
	default:
		return false;
	}
	if (p[1] != '\0' || n > now_us / unit)
		return false;
	*out = now_us - n * unit;
	return true;
}

/* Fraction digits ".123456" into µs (at most 6 digits kept). */
static const char *parse_fraction(const char *p, uint64_t *us)
{
	*us = 0;
	if (*p != '.')
		return p;
	p++;
	int k = 0;
	if (!isdigit((unsigned char)*p))
		return NULL;
	for (; isdigit((unsigned char)*p); p++, k++)
		if (k < 6)
			*us = *us * 10 + (uint64_t)(*p - '0');
	for (; k < 6; k++)
		*us *= 10;
	return p;
}

/* Days in month mon (1..12) of year y, Gregorian. */
static int month_days(int y, int mon)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
	return days[mon - 1] + (mon == 2 && leap);
}

/* s matches pat, where '9' stands for a digit and any other byte for
 * itself (sscanf's %d alone would take signs and spaces). */
static bool shaped(const char *s, const char *pat)
{
	for (; *pat; s++, pat++)
		if (*pat == '9' ? !isdigit((unsigned char)*s) : *s != *pat)
			return false;
	return true;
}

static bool parse_iso(const char *s, uint64_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	int used = 0;
	if (!shaped(s, "9999-99-99") ||
	    sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &used) != 3 ||
	    used != 10)
		return false;
	const char *p = s + used;
	uint64_t frac = 0;
	if (*p == 'T' || *p == ' ') {
		int n = 0;
		if (!shaped(p + 1, "99:99") ||
		    sscanf(p + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &n) != 2 || n != 5)
			return false;
		p += 1 + n;
		if (*p == ':') {
			if (!shaped(p + 1, "99") || sscanf(p + 1, "%2d%n", &tm.tm_sec, &n) != 1 ||
			    n != 2)
				return false;
			p = parse_fraction(p + 3, &frac);
			if (!p)
				return false;
		}
	}
	bool utc = *p == 'Z';
	if (utc)
		p++;
	if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
	    tm.tm_mday > month_days(tm.tm_year, tm.tm_mon) || tm.tm_hour > 23 || tm.tm_min > 59 ||
	    tm.tm_sec > 60)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	tm.tm_isdst = -1;
	time_t t = utc ? timegm(&tm) : mktime(&tm);
	if (t < 0)
		return false;
	*out = (uint64_t)t * 1000000u + frac;
	return true;
}

bool cli_parse_time(const char *s, uint64_t now_us, uint64_t *out_us)
{
	if (!s || !*s)
		return false;
	if (s[0] == '-')
		return parse_age(s, now_us, out_us);
	if (s[0] == '@') {
		uint64_t sec;
		if (!cli_parse_u64(s + 1, &sec) || sec > UINT64_MAX / 1000000u)
			return false;
		*out_us = sec * 1000000u;
		return true;
	}
	if (strchr(s, '-'))
		return parse_iso(s, out_us);
	return cli_parse_u64(s, out_us);
}

void cli_format_time(uint64_t us, char *out, size_t outlen)
{
	if (us == 0) {
		snprintf(out, outlen, "-");
		return;
	}
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;
	if (!localtime_r(&t, &tm)) {
		snprintf(out, outlen, "%llu", (unsigned long long)us);
		return;
	}
	char day[24];
	strftime(day, sizeof(day), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(out, outlen, "%s.%03u", day, (unsigned)(us % 1000000u / 1000u));
}

void cli_display(buf *out, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		if (c >= 0x80) {
			/* a valid multi-byte sequence passes; a bad byte is escaped */
			size_t k = 2 + (c >= 0xe0) + (c >= 0xf0);
			if (i + k <= n && utf8_valid(s + i, k)) {
				buf_append(out, s + i, k);
				i += k;
				continue;
			}
			buf_printf(out, "\\x%02x", c);
		} else if (c == '\\') {
			buf_puts(out, "\\\\");
		} else if (c == '\n') {
			buf_puts(out, "\\n");
		} else if (c == '\t') {
			buf_puts(out, "\\t");
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(out, "\\x%02x", c);
		} else {
			buf_putc(out, (char)c);
		}
		i++;
	}
}

/* ctx://[:password@]host[:port] or redis://[[user]:password@]host[:port][/db] */
bool cli_parse_url(cli *c, char *url)
{
	char *rest;
	if (strncmp(url, "ctx://", 6) == 0)
		rest = url + 6;
	else if (strncmp(url, "redis://", 8) == 0)
		rest = url + 8;
	else
		return false;
	char *host_at = strrchr(rest, '@'); /* a password may hold a '/' */
	char *slash = strchr(host_at ? host_at + 1 : rest, '/');
	if (slash) { /* a database number: ctxd has only 0, so nothing else */
		if (slash[1] && slash[1 + strspn(slash + 1, "0")] != '\0')
			return false;
		*slash = '\0';
	}
	char *at = strrchr(rest, '@');
	if (at) {
		*at = '\0';
		char *colon = strchr(rest, ':');
		c->password = colon ? colon + 1 : rest;
		rest = at + 1;
	}
	char *colon = strrchr(rest, ':');
	if (rest[0] == '[') { /* [ipv6]:port */
		char *close = strchr(rest, ']');
		if (!close)
			return false;
		if (close[1] && close[1] != ':')
			return false;
		*close = '\0';
		colon = close[1] == ':' ? close + 1 : NULL;
		rest++;
	}
	if (colon) {
		*colon = '\0';
		uint64_t port;
		if (!cli_parse_u64(colon + 1, &port) || port == 0 || port > 65535)
			return false;
		c->port = (int)port;
	}
	if (*rest)
		c->host = rest;
	return true;
}
