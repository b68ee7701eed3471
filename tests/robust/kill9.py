import redis, subprocess, random, time, threading, sys, os, signal, socket
CTXD=sys.argv[1]; ITERS=int(sys.argv[2]); PORT=int(sys.argv[3]); D=sys.argv[4]
# K9_DURABILITY=batch: a kill may lose the last window of acknowledged writes
# (never what the clean stop of the previous cycle synced), but a MULTI is
# still all or nothing and every count stays between that floor and what was sent
DUR=os.environ.get('K9_DURABILITY','always'); BATCH=DUR!='always'
lost_window=[0]
os.makedirs(D, exist_ok=True)
def start():
    log=open(D+'/log','a')
    p=subprocess.Popen([CTXD,'--port',str(PORT),'--dir',D+'/data','--durability',DUR,'--loops','2'],stdout=log,stderr=log)
    for _ in range(200):
        try: socket.create_connection(('127.0.0.1',PORT)).close(); return p
        except OSError: time.sleep(0.02)
    raise SystemExit('ctxd did not start')
# model: acked state
inc_acked={}   # key -> acked count (HINCRBY by 1, unique key per thread)
inc_sent={}
hset_acked=set(); hset_sent=set()
multi_acked={}; multi_sent={}
inc_floor={}; hset_floor=set(); multi_floor={}  # verified after the last clean stop
seq=[0]
def worker(tid, stop):
    r=redis.Redis(port=PORT, socket_timeout=5)
    n=0
    try:
        while not stop.is_set():
            n+=1; op=n%3
            if op==0:
                k=f'inc{tid}'; inc_sent[k]=inc_sent.get(k,inc_acked.get(k,0))+1
                v=r.hincrby(k,'n',1); assert v==inc_sent[k], (k,v,inc_sent[k])
                inc_acked[k]=v
            elif op==1:
                seq[0]+=1; f=f'h{tid}_{seq[0]}'; hset_sent.add(f)
                r.hset(f'hs{tid}_{seq[0]%50}', f, 'x'*random.randint(1,300)); hset_acked.add(f)
            else:
                k=f'mx{tid}'; v=multi_acked.get(k,0)+1; multi_sent[k]=v
                p=r.pipeline(transaction=True)
                p.hset(k,'a',v); p.hincrby(k,'cnt',1); p.hset(k,'b',v); p.execute()
                multi_acked[k]=v
    except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError):
        pass
def verify(it):
    r=redis.Redis(port=PORT, socket_timeout=10)
    bad=0
    for k,a in list(inc_acked.items()):
        v=int(r.hget(k,'n') or 0); s=inc_sent.get(k,a)
        lo=inc_floor.get(k,0) if BATCH else a
        if not (lo<=v<=s): print(f'it{it} INC LOST {k}: acked {a} floor {lo} sent {s} got {v}'); bad+=1
        elif v<a: lost_window[0]+=a-v
        inc_acked[k]=v; inc_sent[k]=v
    for f in list(hset_acked):
        tid,sq=f[1:].split('_'); k=f'hs{tid}_{int(sq)%50}'
        if r.hget(k,f) is None:
            if BATCH and f not in hset_floor: hset_acked.discard(f); lost_window[0]+=1
            else: print(f'it{it} HSET LOST {f}'); bad+=1
    for k,a in list(multi_acked.items()):
        h={x.decode():int(y) for x,y in r.hgetall(k).items()}
        s=multi_sent.get(k,a)
        lo=multi_floor.get(k,0) if BATCH else a
        if h.get('a')!=h.get('b') or not (lo<=h.get('a',0)<=s) or h.get('cnt')!=h.get('a'):
            print(f'it{it} MULTI BAD {k}: acked {a} sent {s} got {h}'); bad+=1
        multi_acked[k]=h.get('a',0); multi_sent[k]=multi_acked[k]
    # unacked hset fields that appeared are fine (applied but reply lost)
    return bad
total_bad=0
for it in range(ITERS):
    p=start()
    stop=threading.Event()
    ts=[threading.Thread(target=worker,args=(t,stop)) for t in range(2)]
    for t in ts: t.start()
    time.sleep(random.uniform(0.05,0.8))
    p.send_signal(signal.SIGKILL); p.wait()
    stop.set()
    for t in ts: t.join()
    p=start()
    b=verify(it); total_bad+=b
    p.terminate(); rc=p.wait()
    inc_floor.update(inc_acked); hset_floor.update(hset_acked); multi_floor.update(multi_acked)
    if rc!=0: print(f'it{it} clean stop rc={rc}'); total_bad+=1
print('durability',DUR,'iterations',ITERS,'defects',total_bad,'lost_in_window',lost_window[0],'inc',sum(inc_acked.values()),'hset',len(hset_acked),'multi',sum(multi_acked.values()))
