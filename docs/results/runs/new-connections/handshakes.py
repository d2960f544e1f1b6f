import subprocess, sys, re, collections
f=sys.argv[1]
out=subprocess.run(['tcpdump','-nn','-tt','-r',f,'-i','any'] if False else ['tcpdump','-nn','-tt','-r',f],capture_output=True,text=True).stdout
# only one direction interface per packet: keep first sighting per (ts-rounded,port,flags)
C=collections.defaultdict(lambda: {'syn':[], 'synack':None,'resp':None,'rst':0})
seen=set()
for l in out.splitlines():
    m=re.match(r'(\S+) (\S+)\s+(In|Out)\s+IP (\S+) > (\S+): Flags \[([^\]]*)\](.*)',l)
    if not m: continue
    ts,ifc,d,src,dst,fl,rest=m.groups(); ts=float(ts)
    if src.startswith('10.250.0.2.'): port=src.split('.')[-1]; fromc=True
    else: port=dst.split('.')[-1].rstrip(':'); fromc=False
    key=(port,fl,rest[:40])
    c=C[port]
    if fromc and fl=='S':
        if not c['syn'] or ts-c['syn'][-1]>0.1: c['syn'].append(ts)
    elif not fromc and fl=='S.' and c['synack'] is None: c['synack']=ts
    elif not fromc and 'P' in fl and c['resp'] is None: c['resp']=ts
    elif 'R' in fl: c['rst']+=1
rows=[(p,c) for p,c in C.items() if c['syn']]
slow=[(p,c) for p,c in rows if c['resp'] and c['resp']-c['syn'][0]>0.3 or len(c['syn'])>1]
print('connections',len(rows),'with SYN retransmitted',sum(1 for p,c in rows if len(c['syn'])>1),'rst conns',sum(1 for p,c in rows if c['rst']))
for p,c in sorted(slow,key=lambda x:x[1]['syn'][0]):
    print(p,'syns',len(c['syn']),'first SYN %.3f'%(c['syn'][0]%100),'synack +%.0f ms'%((c['synack']-c['syn'][0])*1000 if c['synack'] else -1),'response +%.0f ms'%((c['resp']-c['syn'][0])*1000 if c['resp'] else -1),'rst',c['rst'])
