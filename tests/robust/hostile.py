import socket, sys, time, os, subprocess
PORT=int(sys.argv[1]); PID=int(sys.argv[2]) if len(sys.argv)>2 else 0
def rss():
    if not PID: return 0
    with open(f'/proc/{PID}/statm') as f: return int(f.read().split()[1])*4096//1024
def conn():
    s=socket.create_connection(('127.0.0.1',PORT)); s.settimeout(5); return s
def send(payload, read=True, wait=0.3):
    s=conn()
    try:
        s.sendall(payload)
    except Exception as e:
        return 'SENDERR %r'%e
    out=b''
    t=time.time()+wait+2
    try:
        while time.time()<t:
            d=s.recv(65536)
            if not d: out+=b'<CLOSED>'; break
            out+=d
            if len(out)>2000: break
    except socket.timeout: out+=b'<TIMEOUT>'
    except Exception as e: out+=('<%r>'%e).encode()
    s.close(); return out[:300]
def alive():
    s=conn(); s.sendall(b'PING\r\n'); r=s.recv(100); s.close(); return r
cases={
 'huge bulk len': b'*2\r\n$3\r\nGET\r\n$99999999999999999999\r\n',
 '512MB bulk hdr': b'*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n$536870912\r\nabc',
 '512MB+1 bulk hdr': b'*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n$536870913\r\nabc',
 'neg bulk': b'*2\r\n$3\r\nGET\r\n$-5\r\n',
 'neg count': b'*-5\r\nPING\r\n',
 'count -1 then ping': b'*-1\r\n*1\r\n$4\r\nPING\r\n',
 'count 0 then ping': b'*0\r\n*1\r\n$4\r\nPING\r\n',
 'huge count': b'*2147483648\r\n',
 'big count': b'*1000000000\r\n$4\r\nPING\r\n',
 'deep nesting': b'*1\r\n'*1000+b'$4\r\nPING\r\n',
 'nested array': b'*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n',
 'inline quotes': b'HSET "my key" \'f 1\' "v v"\r\nHGETALL "my key"\r\n',
 'inline unbalanced': b'HSET "my key f v\r\nPING\r\n',
 'inline escapes': b'ECHO "a\\x41\\n"\r\n',
 'inline NUL': b'ECHO a\x00b\r\n',
 'bulk NUL': b'*2\r\n$4\r\nECHO\r\n$3\r\na\x00b\r\n',
 'NUL command': b'*1\r\n$4\r\nPI\x00G\r\n',
 'long inline no nl': b'A'*(70*1024),
 'long header no nl': b'*'+b'1'*70000,
 'bad crlf after bulk': b'*1\r\n$4\r\nPINGxx',
 'LF only': b'*1\n$4\nPING\n',
 'garbage binary': bytes(range(256)),
 'bare CRLF': b'\r\n\r\n\r\nPING\r\n',
 'empty bulk cmd': b'*1\r\n$0\r\n\r\n',
 'unknown cmd': b'*1\r\n$7\r\nFOOBARZ\r\n',
 'resp3 types as req': b'%1\r\n+a\r\n+b\r\n',
 'float as count': b'*1.5\r\n',
 'plus sign count': b'*+1\r\n$4\r\nPING\r\n',
 'hello 4': b'HELLO 4\r\n',
 'hello abc': b'HELLO abc\r\n',
 'hello 3 auth wrong': b'HELLO 3 AUTH default x\r\n',
 'select 1': b'SELECT 1\r\n',
 'select -1': b'SELECT -1\r\n',
 'select big': b'SELECT 99999999999999999999999\r\n',
 'expire big': b'HSET ek f v\r\nEXPIRE ek 9999999999999999\r\nTTL ek\r\n',
 'expire neg': b'HSET ek2 f v\r\nEXPIRE ek2 -5\r\nEXISTS ek2\r\n',
 'pexpire overflow': b'HSET ek3 f v\r\nPEXPIRE ek3 9223372036854775807\r\nTTL ek3\r\n',
 'hincrby overflow': b'HSET hi f 9223372036854775807\r\nHINCRBY hi f 1\r\nHGET hi f\r\n',
 'hincrby notint': b'HSET hi2 f abc\r\nHINCRBY hi2 f 1\r\nHINCRBY hi2 g 1.5\r\n',
 'hincrbyfloat inf': b'HINCRBYFLOAT hf f inf\r\nHINCRBYFLOAT hf f 1e308\r\nHINCRBYFLOAT hf f 1e308\r\nHGET hf f\r\n',
 'hincrbyfloat nan': b'HINCRBYFLOAT hf2 f nan\r\n',
 'scan bad cursor': b'SCAN abc\r\nSCAN -1\r\nSCAN 0 COUNT 0\r\nSCAN 0 COUNT -1\r\nSCAN 0 MATCH\r\n',
 'hscan bad': b'HSCAN nokey 0\r\nHSCAN nokey x\r\nHSCAN nokey 0 COUNT 0\r\n',
 'hset odd': b'HSET k f\r\nHSET k f v g\r\nHMSET k\r\nHGET k\r\n',
 'exec nomulti': b'EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nWATCH x\r\nEXEC\r\n',
 'client bad': b'CLIENT\r\nCLIENT FOO\r\nCLIENT SETNAME "a b"\r\nCLIENT KILL ID abc\r\nCLIENT SETINFO lib-name "a b"\r\n',
 'config bad': b'CONFIG\r\nCONFIG SET maxclients -1\r\nCONFIG SET proto-max-bulk-len abc\r\nCONFIG SET timeout 1e99\r\nCONFIG GET\r\n',
 'hrandfield big': b'HSET hr a 1\r\nHRANDFIELD hr -9223372036854775808\r\nHRANDFIELD hr 9223372036854775807\r\nHRANDFIELD hr -5 WITHVALUES\r\n',
 'ctx bad': b'CTX.GET\r\nCTX.SET\r\nCTX.WATCH\r\nCTX.POINT\r\nCTX.RESTORE a b c\r\nCTX.USE\r\n',
 'command docs': b'COMMAND INFO nonexist\r\nCOMMAND DOCS nonexist\r\nCOMMAND GETKEYS HSET a b c\r\n',
 'object/type': b'TYPE nokey\r\nOBJECT ENCODING nokey\r\nGET hi\r\nLPUSH hi x\r\nSET hi v\r\n',
}
base=rss(); print('rss start KB',base)
for name,p in cases.items():
    r=send(p)
    print('%-22s -> %r'%(name,r[:200]))
    try: alive()
    except Exception as e: print('!!! SERVER DOWN after',name,e); sys.exit(1)
print('rss KB',rss())
