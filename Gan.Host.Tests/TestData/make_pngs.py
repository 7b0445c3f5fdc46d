# Writes the PNG fixtures of PngTests.cs with Python's zlib and a minimal PNG writer (independent of
# Gan.Host's encoder). Run: python3 make_pngs.py
import zlib, struct, base64
W,H=7,5
def pix(x,y,c): return (x*37 + y*53 + c*91) % 256
def chunk(t,d):
    c=struct.pack('>I',len(d))+t+d
    return c+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)
def paeth(a,b,c):
    p=a+b-c; pa=abs(p-a); pb=abs(p-b); pc=abs(p-c)
    return a if pa<=pb and pa<=pc else (b if pb<=pc else c)
def pack(samples, depth):
    if depth==8: return bytes(samples)
    if depth==16: return b''.join(struct.pack('>H',s) for s in samples)
    out=[]; per=8//depth
    for i in range(0,len(samples),per):
        b=0
        for k in range(per):
            v=samples[i+k] if i+k<len(samples) else 0
            b |= v << (8-depth*(k+1))
        out.append(b)
    return bytes(out)
def scanlines(pixels, w, h, depth, nsamp, interlace, filt0):
    # pixels: function (x,y) -> list of samples
    passes=[(0,0,1,1)] if not interlace else [(0,0,8,8),(4,0,8,8),(0,4,4,8),(2,0,4,4),(0,2,2,4),(1,0,2,2),(0,1,1,2)]
    bpp=max(1, nsamp*depth//8); raw=b''; f=filt0
    for (x0,y0,dx,dy) in passes:
        xs=list(range(x0,w,dx)); ys=list(range(y0,h,dy))
        if not xs or not ys: continue
        prior=None
        for y in ys:
            row=pack([s for x in xs for s in pixels(x,y)], depth)
            if prior is None: prior=bytes(len(row))
            out=[f]
            for i,v in enumerate(row):
                a=row[i-bpp] if i>=bpp else 0; b=prior[i]; c=prior[i-bpp] if i>=bpp else 0
                out.append((v-[0,a,b,(a+b)//2,paeth(a,b,c)][f])%256)
            raw+=bytes(out); prior=row; f=(f+1)%5
    return raw
def png(w,h,depth,ctype,interlace,pixels,nsamp,extra=b''):
    raw=scanlines(pixels,w,h,depth,nsamp,interlace,0)
    return (b'\x89PNG\r\n\x1a\n'+chunk(b'IHDR',struct.pack('>IIBBBBB',w,h,depth,ctype,0,0,interlace))+extra
            +chunk(b'tEXt',b'Software\x00python zlib')+chunk(b'IDAT',zlib.compress(raw,9))+chunk(b'IEND',b''))
files={
 'RgbaFilters': png(W,H,8,6,0,lambda x,y:[pix(x,y,0),pix(x,y,1),pix(x,y,2),(x*y*17)%256],4),
 'RgbInterlaced': png(W,H,8,2,1,lambda x,y:[pix(x,y,0),pix(x,y,1),pix(x,y,2)],3),
 'Grey16': png(W,H,16,0,0,lambda x,y:[pix(x,y,0)*256+(x*y)%256],1),
 'Grey2Interlaced': png(W,H,2,0,1,lambda x,y:[(x+y)%4],1),
}
pal=bytes(v for i in range(16) for v in ((i*16)%256,(i*7*16)%256,255-i*16))
files['Palette4']=png(W,H,4,3,0,lambda x,y:[(x*3+y)%16],1,chunk(b'PLTE',pal))
# Prints the C# constants of PngTests.cs.
for k,v in files.items():
    print(f'    private const string {k} = "{base64.b64encode(v).decode()}";')
