# bench/redis/prefill.awk - the data both servers get before a measurement,
# as RESP commands for `redis-cli --pipe` (awk -f prefill.awk > prefill.resp):
#   hk:000000000000 .. hk:000000000999  1,000 hashes of 1,000 fields
#       f:000000000000 .. f:000000000999 = 16 bytes, so that HGET of a random
#       field of a random hash (-r 1000) always finds one (one HSET per hash)
#   h16                                 16 fields field:0 .. field:15 = 16 bytes
#                                        (HGETALL)
#   myhash:000000000000 .. myhash:000000099999  one field f:init = v, so that
#       HSET of a random field of a random hash (-r 100000) adds a field to a
#       hash that exists, as in a server that has run for a while
# The names are the ones redis-benchmark makes: __rand_int__ becomes a
# 12-digit zero-padded number.
BEGIN {
	val = "vvvvvvvvvvvvvvvv"
	for (h = 0; h < 1000; h++) {
		printf "*%d\r\n$4\r\nHSET\r\n$15\r\nhk:%012d\r\n", 2 + 2 * 1000, h
		for (f = 0; f < 1000; f++)
			printf "$14\r\nf:%012d\r\n$16\r\n%s\r\n", f, val
	}
	printf "*34\r\n$4\r\nHSET\r\n$3\r\nh16\r\n"
	for (f = 0; f < 16; f++)
		printf "$%d\r\nfield:%d\r\n$16\r\n%s\r\n", f < 10 ? 7 : 8, f, val
	for (h = 0; h < 100000; h++)
		printf "*4\r\n$4\r\nHSET\r\n$19\r\nmyhash:%012d\r\n$6\r\nf:init\r\n$1\r\nv\r\n", h
}
