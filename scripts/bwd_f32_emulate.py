"""No-GPU checks of the float32 backward (bwd_mma/warp_ops32.cuh, dkdv_f32_kernel.cuh), numpy only:
1. the three m16n8k8 TF32 fragment helpers with the k permutation, emulated per lane, against matmul;
2. the dK/dV kernel's control flow (key blocks of 64, query items over the GQA group, causal mb_begin,
   16-query steps, live tests, dS^T staging and the in-CTA dQ step's warp/chunk mapping) at tile level in
   float64, against dense gradients.   python3 scripts/bwd_f32_emulate.py"""
import numpy as np
rng=np.random.default_rng(0)
def mma(C, A, B):  # C[lane][4], A[lane][4], B[lane][2]
    Am=np.zeros((16,8)); Bm=np.zeros((8,8))
    for l in range(32):
        g,t=l//4,l%4
        Am[g,t],Am[g+8,t],Am[g,t+4],Am[g+8,t+4]=A[l]
        Bm[t,g],Bm[t+4,g]=B[l]
    R=Am@Bm
    for l in range(32):
        g,t=l//4,l%4
        C[l][0]+=R[g,2*t];C[l][1]+=R[g,2*t+1];C[l][2]+=R[g+8,2*t];C[l][3]+=R[g+8,2*t+1]
def acc_to_mat(C, N):  # C[lane][nb][4] -> 16xN
    M=np.zeros((16,N))
    for l in range(32):
        g,t=l//4,l%4
        for nb in range(N//8):
            M[g,nb*8+2*t],M[g,nb*8+2*t+1],M[g+8,nb*8+2*t],M[g+8,nb*8+2*t+1]=C[l][nb]
    return M
def mat_to_acc(M):
    N=M.shape[1]; C=[[ [0]*4 for _ in range(N//8)] for _ in range(32)]
    for l in range(32):
        g,t=l//4,l%4
        for nb in range(N//8):
            C[l][nb]=[M[g,nb*8+2*t],M[g,nb*8+2*t+1],M[g+8,nb*8+2*t],M[g+8,nb*8+2*t+1]]
    return C
def rows_bt(N,K,sA,PA,sB,PB):  # flat arrays
    C=[[[0.]*4 for _ in range(N//8)] for _ in range(32)]
    for k8 in range(K//8):
        A=[];
        for l in range(32):
            g,t=l//4,l%4
            r0=(sA[g*PA+k8*8+2*t],sA[g*PA+k8*8+2*t+1]); r1=(sA[(g+8)*PA+k8*8+2*t],sA[(g+8)*PA+k8*8+2*t+1])
            A.append([r0[0],r1[0],r0[1],r1[1]])
        for nb in range(N//8):
            B=[]
            for l in range(32):
                g,t=l//4,l%4
                B.append([sB[(nb*8+g)*PB+k8*8+2*t],sB[(nb*8+g)*PB+k8*8+2*t+1]])
            Cn=[C[l][nb] for l in range(32)]; mma(Cn,A,B)
    return C
def regs_b(N,K,Aacc,sB,PB,n0):
    C=[[[0.]*4 for _ in range(N//8)] for _ in range(32)]
    for kb in range(K//8):
        A=[[Aacc[l][kb][0],Aacc[l][kb][2],Aacc[l][kb][1],Aacc[l][kb][3]] for l in range(32)]
        for nb in range(N//8):
            B=[]
            for l in range(32):
                g,t=l//4,l%4; base=(kb*8+2*t)*PB+n0+g
                B.append([sB[base+nb*8],sB[base+PB+nb*8]])
            Cn=[C[l][nb] for l in range(32)]; mma(Cn,A,B)
    return C
def trans_b(N,K,sAT,PT,col0,sB,PB,n0):
    C=[[[0.]*4 for _ in range(N//8)] for _ in range(32)]
    for kb in range(K//8):
        A=[]
        for l in range(32):
            g,t=l//4,l%4; at=(kb*8+2*t)*PT+col0+g
            A.append([sAT[at],sAT[at+8],sAT[at+PT],sAT[at+PT+8]])
        for nb in range(N//8):
            B=[]
            for l in range(32):
                g,t=l//4,l%4; base=(kb*8+2*t)*PB+n0+g
                B.append([sB[base+nb*8],sB[base+PB+nb*8]])
            Cn=[C[l][nb] for l in range(32)]; mma(Cn,A,B)
    return C
# rows_bt: C(16xN) = A(16xK) B, sB holds B^T (N x K)
N,K,PA,PB=16,32,36,36
A=rng.standard_normal((16,K)); BT=rng.standard_normal((N,K))
sA=np.zeros(16*PA); sB=np.zeros(N*PB)
for r in range(16): sA[r*PA:r*PA+K]=A[r]
for r in range(N): sB[r*PB:r*PB+K]=BT[r]
print('rows_bt', np.abs(acc_to_mat(rows_bt(N,K,sA,PA,sB,PB),N)-A@BT.T).max())
# regs_b: C(16xN) = A(16xK, acc) * B (K x N row-major at cols n0..)
N,K,PB,n0=32,16,68,8
A=rng.standard_normal((16,K)); B=rng.standard_normal((K,64))
sB=np.zeros(K*PB)
for r in range(K): sB[r*PB:r*PB+64]=B[r]
print('regs_b', np.abs(acc_to_mat(regs_b(N,K,mat_to_acc(A),sB,PB,n0),N)-A@B[:,n0:n0+N]).max())
# trans_b: A^T stored (K rows x 32 cols pitch PT), A rows = cols col0..col0+15
N,K,PT,col0,PB,n0=32,64,36,16,68,32
AT=rng.standard_normal((K,32)); B=rng.standard_normal((K,64))
sAT=np.zeros(K*PT); sB=np.zeros(K*PB)
for r in range(K): sAT[r*PT:r*PT+32]=AT[r]; sB[r*PB:r*PB+64]=B[r]
A=AT[:,col0:col0+16].T
print('trans_b', np.abs(acc_to_mat(trans_b(N,K,sAT,PT,col0,sB,PB,n0),N)-A@B[:,n0:n0+N]).max())

def dense(q,k,v,do,causal_off,scale,group):
    B,H,L,E=q.shape; S=k.shape[2]
    kk=np.repeat(k,group,1); vv=np.repeat(v,group,1)
    s=np.einsum('bhle,bhse->bhls',q,kk)*scale
    keep=np.ones((L,S),bool)
    if causal_off is not None: keep=np.arange(S)[None,:]<=np.arange(L)[:,None]+causal_off
    s=np.where(keep,s,-np.inf)
    m=s.max(-1,keepdims=True); m=np.where(np.isfinite(m),m,0)
    p=np.exp(s-m); l=p.sum(-1,keepdims=True); p=np.where(l>0,p/np.where(l>0,l,1),0)
    lse=np.where(l[...,0]>0,np.log(np.where(l[...,0]>0,l[...,0],1))+m[...,0],-np.inf)
    o=np.einsum('bhls,bhse->bhle',p,vv)
    D=(do*o).sum(-1)
    dp=np.einsum('bhle,bhse->bhls',do,vv); ds=p*(dp-D[...,None])
    dq=np.einsum('bhls,bhse->bhle',ds,kk)*scale
    dk=np.einsum('bhls,bhle->bhse',ds,q)*scale; dv=np.einsum('bhls,bhle->bhse',p,do)
    B_,Hkv=B,H//group
    dk=dk.reshape(B,Hkv,group,S,E).sum(2); dv=dv.reshape(B,Hkv,group,S,-1).sum(2)
    return dq,dk,dv,lse,D
def emu(q,k,v,do,lse,D,causal_off,scale,group):
    B,H,L,E=q.shape; Hkv=k.shape[1]; S=k.shape[2]
    BM,BN,QS,W=32,64,16,4
    CAUSAL=causal_off is not None; off=causal_off if CAUSAL else 0
    dq=np.zeros_like(q); dk=np.zeros_like(k); dv=np.zeros_like(v)
    nk=(S+BN-1)//BN
    for blk in range(nk*B*Hkv):
        kb=blk%nk; bhk=blk//nk; b=bhk//Hkv; hk=bhk%Hkv; n0=kb*BN
        n_mblocks=(L+BM-1)//BM; mb_begin=0
        if CAUSAL:
            first_row=max(n0-off,0); mb_begin=n_mblocks if first_row>=L else first_row//BM
        per_head=n_mblocks-mb_begin; n_items=per_head*group
        Kt=np.zeros((BN,E)); Vt=np.zeros((BN,v.shape[3]))
        kv=min(S-n0,BN); Kt[:kv]=k[b,hk,n0:n0+kv]; Vt[:kv]=v[b,hk,n0:n0+kv]
        dK=np.zeros((W,16,E)); dV=np.zeros((W,16,v.shape[3]))
        for it in range(n_items):
            h=hk*group+it//per_head; m0=(mb_begin+it%per_head)*BM
            rows=min(L-m0,BM)
            Qt=np.zeros((BM,E)); dOt=np.zeros((BM,do.shape[3])); lse2=np.full(BM,np.inf); Dt=np.zeros(BM)
            Qt[:rows]=q[b,h,m0:m0+rows]; dOt[:rows]=do[b,h,m0:m0+rows]
            for i in range(rows):
                lse2[i]=np.inf if lse[b,h,m0+i]==-np.inf else lse[b,h,m0+i]
                Dt[i]=D[b,h,m0+i]
            dS=np.zeros((BN,BM)); live_any=False
            for w in range(W):
                kw0=n0+w*16
                for hq in range(BM//QS):
                    q0=m0+hq*QS
                    live=q0<L and kw0<S and (not CAUSAL or kw0<=q0+QS-1+off)
                    if not live: continue
                    St=Kt[w*16:w*16+16]@Qt[hq*QS:hq*QS+QS].T
                    P=np.zeros_like(St)
                    for kr in range(16):
                        for qi in range(QS):
                            row=q0+qi; key=kw0+kr
                            if row>=L or key>=S: continue
                            if CAUSAL and key>row+off: continue
                            P[kr,qi]=np.exp(St[kr,qi]*scale-lse2[hq*QS+qi])
                    if not P.any(): continue
                    dV[w]+=P@dOt[hq*QS:hq*QS+QS]
                    dPt=Vt[w*16:w*16+16]@dOt[hq*QS:hq*QS+QS].T
                    ds=np.where(P==0,0,P*(dPt-Dt[hq*QS:hq*QS+QS][None,:]))
                    dK[w]+=ds@Qt[hq*QS:hq*QS+QS]
                    dS[w*16:w*16+16,hq*QS:hq*QS+QS]=ds; live_any=True
            if live_any:  # dq_step
                for w in range(W):
                    qrow0=m0+(w%2)*16
                    if qrow0>=L: continue
                    for c0 in range((w//2)*32,min(E,128),64):
                        if c0>=E: break
                        acc=dS[:,(w%2)*16:(w%2)*16+16].T@Kt[:,c0:c0+32]
                        for r in range(16):
                            for c in range(acc.shape[1]):
                                if qrow0+r<L and c0+c<E: dq[b,h,qrow0+r,c0+c]+=acc[r,c]*scale
        for w in range(W):
            for kr in range(16):
                key=n0+w*16+kr
                if key<S: dk[b,hk,key]=dK[w,kr]*scale; dv[b,hk,key]=dV[w,kr]
    return dq,dk,dv
for (B,H,Hkv,L,S,E,coff) in [(1,4,2,97,113,40,None),(1,2,1,113,70,64,'br'),(1,2,2,40,150,32,'br'),(1,2,1,70,70,40,'tl')]:
    q=rng.standard_normal((B,H,L,E));k=rng.standard_normal((B,Hkv,S,E));v=rng.standard_normal((B,Hkv,S,E));do=rng.standard_normal((B,H,L,E))
    off=None if coff is None else (S-L if coff=='br' else 0)
    scale=E**-0.5
    dq,dk,dv,lse,D=dense(q,k,v,do,off,scale,H//Hkv)
    eq,ek,ev=emu(q,k,v,do,lse,D,off,scale,H//Hkv)
    print((B,H,Hkv,L,S,E,coff), abs(eq-dq).max(), abs(ek-dk).max(), abs(ev-dv).max())
