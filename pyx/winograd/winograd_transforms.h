/* Input and output transforms of the cython-winograd kernels: a template included once
 * per dtype by winograd_kernels.h, which #defines before each inclusion
 *
 *   WT  scalar type       WV  vector type       WVL  lanes per vector
 *   CRW_INPUT / CRW_OUTPUT / CRW_OUTSTORE / CRW_LOADU / CRW_STOREU   the function names
 *   (literal)
 *
 * (no include guard on purpose). The input transform and the output store run on a
 * *segment*: nt consecutive tiles of one tile row that share a column residue (dilation
 * sub-grid), so tile u of the segment covers the output columns col0 + dw*(u*m + j),
 * j < m, and reads the (padded) input columns col0 - pl + dw*(u*m + k), k < alpha = m + 2.
 * Vectors run over the tiles u: lane l of a vector is tile u0 + l. The output transform's
 * arithmetic (CRW_OUTPUT) runs over all the tiles of a block at once.
 */

static inline WV CRW_LOADU(const WT *p) {
    WV v;
    memcpy(&v, p, sizeof(WV));
    return v;
}

static inline void CRW_STOREU(WT *p, WV v) { memcpy(p, &v, sizeof(WV)); }

/* V[(i*4 + s)*vps + u] := (B^T d B)[i][s] of F(2,3) for the WVL tiles u of d's lanes,
 * d[r][k] lane u = d_u[r][k], for the rows i of `half` (-1: all; 0: rows 0-1, from input
 * rows 0-2; 1: rows 2-3, from input rows 1-3; the others' V is not written and the input
 * row a half does not read may hold anything). */
#define CRW_HALF_LO(half) ((half) == 1 ? 2 : 0)
#define CRW_HALF_HI(half) ((half) == 0 ? 2 : 4)
static inline __attribute__((always_inline)) void CRW_BT44(WV d[4][4], WT *restrict V,
                                                           ptrdiff_t vps, int half)
{
    WV t[4][4], e[4], o[4];
    for (int k = 0; k < 4; k++) {
        for (int r = 0; r < 4; r++) e[r] = d[r][k];
        CRW_BT4(WT, o, e);
        for (int i = 0; i < 4; i++) t[i][k] = o[i];
    }
    for (int i = CRW_HALF_LO(half); i < CRW_HALF_HI(half); i++) {
        CRW_BT4(WT, o, t[i]);
        for (int s = 0; s < 4; s++) CRW_STOREU(V + (i * 4 + s) * vps, o[s]);
    }
}
#undef CRW_HALF_LO
#undef CRW_HALF_HI

/* V[(i*alpha + s)*vps + u] := (B^T d_u B)[i][s] for u < nt (lanes up to the next multiple
 * of WVL are written too: the caller gives that much room and overwrites them later),
 * with d_u[r][k] = x[row0 + dh*r][col0 + dw*(u*m + k)], zero outside the h x w plane.
 *
 * P is scratch of (alpha + 1)*m*(roundup(nt, WVL) + WVL) elements: the alpha input rows
 * of the segment, each split into its m column phases, P[(r*m + f)*lp + u] = d_u[r][f],
 * so d_u[r][k] = P[(r*m + k%m)*lp + u + k/m] and every (r, k) is one contiguous vector
 * load; then one zero-padded input row for segments that touch the padding. F(2,3)
 * without column dilation on AVX-512 skips P: each row's four phases go from masked
 * loads of x straight into registers (CRW_ROW2). */
static inline __attribute__((always_inline)) void
CRW_INPUT_H(int m, const WT *restrict x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t row0,
            ptrdiff_t dh, ptrdiff_t col0, ptrdiff_t dw, ptrdiff_t nt, WT *restrict P,
            WT *restrict V, ptrdiff_t vps, const int half)
{
    const int al = m + 2;
    const ptrdiff_t nv = (nt + WVL - 1) / WVL * WVL;
    const ptrdiff_t lp = nv + WVL;
    const ptrdiff_t nu = nv + 1;            /* tile offsets u the transform reads */
    const ptrdiff_t ne = nu * m;            /* input columns behind them */
    WT *R = P + (ptrdiff_t)al * m * lp;     /* one zero-padded input row */
    ptrdiff_t elo, ehi;     /* input columns col0 + dw*e, e in [elo, ehi), lie inside */
    crw_row_span(col0, dw, w, ne, &elo, &ehi);
    const int inside = dw == 1 && elo == 0 && ehi == ne;
#if CRW_HAVE_DEINTB
    const int inreg = m == 2 && dw == 1;    /* F(2,3) rows go straight to registers */
#else
    const int inreg = 0;
#endif
    for (int r = 0; r < al && !inreg; r++) {
        const ptrdiff_t row = row0 + dh * r;
        WT *pr = P + (ptrdiff_t)r * m * lp;
        if (row < 0 || row >= h) {
            for (int f = 0; f < m; f++)
                for (ptrdiff_t u = 0; u < nu; u++) pr[f * lp + u] = 0;
            continue;
        }
        const WT *xr = x + row * w + col0;
        if (inside) {
            CRW_DEINT(m, xr, nu, pr, lp);
            continue;
        }
        if (CRW_HAVE_DEINTB && dw == 1) {    /* masked loads: no copy */
            CRW_DEINTB(m, xr, nu, elo, ehi, pr, lp);
            continue;
        }
        ptrdiff_t e = 0;
        for (; e < elo; e++) R[e] = 0;
        if (dw == 1)
            for (; e < ehi; e++) R[e] = xr[e];
        else
            for (; e < ehi; e++) R[e] = xr[dw * e];
        for (; e < ne; e++) R[e] = 0;
        CRW_DEINT(m, R, nu, pr, lp);
    }
    if (m == 2) {
        for (ptrdiff_t u0 = 0; u0 < nv; u0 += WVL) {
            WV d[4][4];
            for (int r = 0; r < 4; r++) {
                if (r == (half == 0 ? 3 : half == 1 ? 0 : -1)) {    /* not read */
                    for (int k = 0; k < 4; k++) d[r][k] = (WV){0};
                    continue;
                }
#if CRW_HAVE_DEINTB
                const ptrdiff_t row = row0 + dh * r;
                if (inreg && row >= 0 && row < h) {
                    CRW_ROW2(x + row * w + col0, 2 * u0, elo, ehi, d[r]);
                    continue;
                }
#endif
                for (int k = 0; k < 4; k++)
                    d[r][k] = inreg ? (WV){0}
                                    : CRW_LOADU(P + (r * 2 + (k & 1)) * lp + u0 + (k >> 1));
            }
            CRW_BT44(d, V + u0, vps, half);
        }
    } else {
        for (ptrdiff_t u0 = 0; u0 < nv; u0 += WVL) {
            WV t[6][6], e[6], o[6];
            for (int k = 0; k < 6; k++) {
                for (int r = 0; r < 6; r++)
                    e[r] = CRW_LOADU(P + (r * 4 + (k & 3)) * lp + u0 + (k >> 2));
                CRW_BT6(WT, o, e);
                for (int i = 0; i < 6; i++) t[i][k] = o[i];
            }
            for (int i = 0; i < 6; i++) {
                CRW_BT6(WT, o, t[i]);
                for (int s = 0; s < 6; s++) CRW_STOREU(V + (i * 6 + s) * vps + u0, o[s]);
            }
        }
    }
}

/* half: a literal in each call of the body, so the whole transform (-1) runs the code it
 * ran before halves existed (a runtime test per row cost 2-4 % of a 64ch 56^2 call). */
static void CRW_INPUT(int m, const WT *restrict x, ptrdiff_t h, ptrdiff_t w,
                      ptrdiff_t row0, ptrdiff_t dh, ptrdiff_t col0, ptrdiff_t dw,
                      ptrdiff_t nt, WT *restrict P, WT *restrict V, ptrdiff_t vps, int half)
{
    if (half == 0)
        CRW_INPUT_H(m, x, h, w, row0, dh, col0, dw, nt, P, V, vps, 0);
    else if (half == 1)
        CRW_INPUT_H(m, x, h, w, row0, dh, col0, dw, nt, P, V, vps, 1);
    else
        CRW_INPUT_H(m, x, h, w, row0, dh, col0, dw, nt, P, V, vps, -1);
}

/* F(2,3) input transform of one input channel for the nt tiles of a whole block, which
 * lie in nseg segments (runs of one tile row, in tile order; column dilation 1):
 * seg[4*s .. 4*s + 3] = the offset of segment s's input plane from x, its first input row,
 * its first input column, its tile count. V as CRW_INPUT writes it, from V's start.
 * AVX-512: the segments' input rows go into P as 16 planes of lp = roundup(nt, WVL) + WVL
 * elements, P[(r*4 + k)*lp + u] = d_u[r][k] for every tile u of the block, and the
 * transform then runs over whole vectors of the block's tiles: per segment, it ran over
 * the segment's tiles rounded up to a vector (a 7-tile row of a 14^2 image: 16 lanes for
 * 7 tiles) and stored each vector of V across cache lines that the next segment wrote
 * again. `fresh`: the block's first channel in this P (its lanes past the block are
 * zeroed: the transform of the last vector reads them, and V's lanes there are cleared
 * afterwards, but stale workspace could hold denormals, which cost microcode assists).
 * Other builds: CRW_INPUT segment by segment. */
static inline __attribute__((always_inline)) void
CRW_INPUT2B_H(const WT *restrict x, const ptrdiff_t *restrict seg, int nseg, ptrdiff_t h,
              ptrdiff_t w, ptrdiff_t dh, ptrdiff_t nt, int fresh, WT *restrict P,
              WT *restrict V, ptrdiff_t vps, const int half)
{
    const int skip = half == 0 ? 3 : half == 1 ? 0 : -1;   /* the input row not read */
#if CRW_HAVE_DEINTB
    const ptrdiff_t nv = (nt + WVL - 1) / WVL * WVL, lp = nv + WVL;
    if (fresh)
        for (int q = 0; q < 16; q++)
            for (ptrdiff_t u = nt; u < lp; u++) P[q * lp + u] = 0;
    ptrdiff_t o = 0;
    for (int s = 0; s < nseg; s++) {
        const WT *xs = x + seg[4 * s];
        const ptrdiff_t row0 = seg[4 * s + 1], col0 = seg[4 * s + 2], sl = seg[4 * s + 3];
        ptrdiff_t elo, ehi;     /* the segment's input columns inside the row */
        crw_row_span(col0, 1, w, ((sl + WVL - 1) / WVL * WVL + 1) * 2, &elo, &ehi);
        for (int r = 0; r < 4; r++) {
            if (r == skip)
                continue;
            const ptrdiff_t row = row0 + dh * r;
            WT *pr = P + (ptrdiff_t)r * 4 * lp + o;
            for (ptrdiff_t u0 = 0; u0 < sl; u0 += WVL) {
                WV d[4] = {{0}};
                if (row >= 0 && row < h)
                    CRW_ROW2(xs + row * w + col0, 2 * u0, elo, ehi, d);
                for (int k = 0; k < 4; k++) CRW_STOREU(pr + k * lp + u0, d[k]);
            }
        }
        o += sl;
    }
    for (ptrdiff_t u0 = 0; u0 < nv; u0 += WVL) {
        WV d[4][4];
        for (int r = 0; r < 4; r++)
            for (int k = 0; k < 4; k++)
                d[r][k] = r == skip ? (WV){0} : CRW_LOADU(P + (r * 4 + k) * lp + u0);
        CRW_BT44(d, V + u0, vps, half);
    }
#else
    (void)fresh;
    (void)skip;
    ptrdiff_t o = 0;
    for (int s = 0; s < nseg; s++) {
        CRW_INPUT(2, x + seg[4 * s], h, w, seg[4 * s + 1], dh, seg[4 * s + 2], 1,
                  seg[4 * s + 3], P, V + o, vps, half);
        o += seg[4 * s + 3];
    }
#endif
}

static void CRW_INPUT2B(const WT *restrict x, const ptrdiff_t *restrict seg, int nseg,
                        ptrdiff_t h, ptrdiff_t w, ptrdiff_t dh, ptrdiff_t nt, int fresh,
                        WT *restrict P, WT *restrict V, ptrdiff_t vps, int half)
{
    if (half == 0)
        CRW_INPUT2B_H(x, seg, nseg, h, w, dh, nt, fresh, P, V, vps, 0);
    else if (half == 1)
        CRW_INPUT2B_H(x, seg, nseg, h, w, dh, nt, fresh, P, V, vps, 1);
    else
        CRW_INPUT2B_H(x, seg, nseg, h, w, dh, nt, fresh, P, V, vps, -1);
}

/* Q[(i*m + j)*ldq + u] := bias + (A^T M_u A)[i][j] for u < nt (lanes up to the next
 * multiple of WVL), where M_u[p][q] = M[(p*alpha + q)*mps + u]. Lanes are tiles of the
 * whole block, whatever segment they belong to: a segment of a small image (4 tiles of
 * a 7x7 one) filled a quarter of each vector when this ran per segment. */
static void CRW_OUTPUT(int m, const WT *restrict M, ptrdiff_t mps, ptrdiff_t nt, WT bias,
                       WT *restrict Q, ptrdiff_t ldq)
{
    const ptrdiff_t nv = (nt + WVL - 1) / WVL * WVL;
    const WV bv = bias - (WV){0};
    if (m == 2) {
        for (ptrdiff_t u0 = 0; u0 < nv; u0 += WVL) {
            WV t[2][4], e[4], y[2];
            for (int q = 0; q < 4; q++) {
                for (int p = 0; p < 4; p++) e[p] = CRW_LOADU(M + (p * 4 + q) * mps + u0);
                CRW_AT4(WT, y, e);
                t[0][q] = y[0];
                t[1][q] = y[1];
            }
            for (int i = 0; i < 2; i++) {
                CRW_AT4(WT, y, t[i]);
                for (int j = 0; j < 2; j++) CRW_STOREU(Q + (i * 2 + j) * ldq + u0, y[j] + bv);
            }
        }
    } else {
        for (ptrdiff_t u0 = 0; u0 < nv; u0 += WVL) {
            WV t[4][6], e[6], y[4];
            for (int q = 0; q < 6; q++) {
                for (int p = 0; p < 6; p++) e[p] = CRW_LOADU(M + (p * 6 + q) * mps + u0);
                CRW_AT6(WT, y, e);
                for (int i = 0; i < 4; i++) t[i][q] = y[i];
            }
            for (int i = 0; i < 4; i++) {
                CRW_AT6(WT, y, t[i]);
                for (int j = 0; j < 4; j++) CRW_STOREU(Q + (i * 4 + j) * ldq + u0, y[j] + bv);
            }
        }
    }
}

/* out[row0 + dh*i][col0 + dw*(u*m + j)] := Q[(i*m + j)*ldq + u] for the nt tiles u of one
 * segment (Q at the segment's first tile, as CRW_OUTPUT left it), cropped to the oh x ow
 * plane. The phase merge reads whole vectors: ldq leaves a vector of room past them. */
static void CRW_OUTSTORE(int m, const WT *restrict Q, ptrdiff_t ldq, ptrdiff_t nt,
                         WT *restrict out, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t row0,
                         ptrdiff_t dh, ptrdiff_t col0, ptrdiff_t dw)
{
    /* valid columns q = u*m + j of the segment: col0 + dw*q < ow */
    ptrdiff_t nq = col0 < ow ? (ow - col0 + dw - 1) / dw : 0;
    if (nq > nt * m) nq = nt * m;
    for (int i = 0; i < m; i++) {
        const ptrdiff_t row = row0 + dh * i;
        if (row >= oh) break;
        WT *orow = out + row * ow + col0;
        const WT *qi = Q + (ptrdiff_t)i * m * ldq;
        if (dw == 1) {
            CRW_INTER(m, qi, ldq, nq, orow);
        } else {
            for (ptrdiff_t q = 0; q < nq; q++) orow[dw * q] = qi[(q % m) * ldq + q / m];
        }
    }
}

/* CRW_OUTSTORE for every segment of a block, from a list made once per block: seg[4*s ..
 * 4*s + 3] = the offset of segment s's output plane from out, its first output row, its
 * first output column, its tile count (segments in tile order, Q at the block's first
 * tile). Per segment from Cython, the bookkeeping of a 4-tile row of a 7^2 image cost
 * more than its stores. */
static void CRW_OUTSTOREB(int m, const WT *restrict Q, ptrdiff_t ldq,
                          const ptrdiff_t *restrict seg, int nseg, WT *restrict out,
                          ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t dh, ptrdiff_t dw)
{
    ptrdiff_t t = 0;
    for (int s = 0; s < nseg; s++) {
        CRW_OUTSTORE(m, Q + t, ldq, seg[4 * s + 3], out + seg[4 * s], oh, ow, seg[4 * s + 1],
                     dh, seg[4 * s + 2], dw);
        t += seg[4 * s + 3];
    }
}

/* Weight transform of one group, panels [ob0, ob1): U[((p*unp + o/8 - ob0)*cig + c)*8 + o%8]
 * := (G g G^T)[p] with g = w[(o*cig + c)*9 ...] (3x3) for o < cog, zero for
 * cog <= o < 8*nob; computed in double and rounded once. unp: the panels per position of
 * the destination (the group's nob for a whole transform, ob1 - ob0 for the chunk a
 * convolution transforms just before its GEMM reads it). G is F(m,3)'s alpha x 3
 * interpolation matrix. AL = m + 2 is fixed at compile time (every loop unrolls, G folds
 * into constants); the 8 output channels of a panel are the lanes of every operation
 * (one AVX-512 double vector), so the 8 kernels of a panel are transformed together and
 * each position's 8 results are stored as one run. With `swap`, the kernels are those of
 * the transposed convolution (the input gradient of a stride-1 layer): output channel o
 * and input channel c of this transform read the layer's w[c][o] rotated by 180 degrees,
 * so no flipped copy of the weights is ever made. */
static inline __attribute__((always_inline)) void
CRW_WTRANS_AL(const int AL, const double (*G)[3], const WT *restrict w, ptrdiff_t cog,
              ptrdiff_t cig, int swap, ptrdiff_t ob0, ptrdiff_t ob1, WT *restrict U,
              ptrdiff_t unp)
{
    /* Results of CRW_WCB input channels are kept in B and written position by position
       as runs of whole lines: the alpha^2 positions lie unp*cig*8 elements apart, often
       a multiple of 4 KiB, and 16-36 interleaved 32-byte stores into them fell into one
       L1 set and evicted each other before their lines were complete. */
    WT B[36][CRW_WCB * 8];
    for (ptrdiff_t ob = ob0; ob < ob1; ob++) {
        const int nr = cog - ob * 8 < 8 ? (int)(cog - ob * 8) : 8;
        for (ptrdiff_t c0 = 0; c0 < cig; c0 += CRW_WCB) {
            const int nc = cig - c0 < CRW_WCB ? (int)(cig - c0) : CRW_WCB;
            for (int k = 0; k < nc; k++) {
                const ptrdiff_t c = c0 + k;
                /* One value per kernel element, 8 output channels wide, held in registers
                   (arrays of 8 doubles written and read at different widths stall on
                   store forwarding: 60 % of the transform's time was one such reload). */
                crw_v8d g[9], t[6][3];
                if (swap)   /* output channel r's kernel, rotated: w[c, ob*8 + r, 2-u, 2-v] */
                    CRW_GATHER9(w + (c * cog + ob * 8) * 9 + 8, 9, -1, nr, g);
                else
                    CRW_GATHER9(w + (ob * 8 * cig + c) * 9, cig * 9, 1, nr, g);
#pragma GCC unroll 6
                for (int i = 0; i < AL; i++)
#pragma GCC unroll 3
                    for (int q = 0; q < 3; q++)
                        t[i][q] = CRW_G3(G[i], g[q], g[3 + q], g[6 + q]);
#pragma GCC unroll 6
                for (int i = 0; i < AL; i++)
#pragma GCC unroll 6
                    for (int j = 0; j < AL; j++)
                        CRW_V8_STORE(B[i * AL + j] + k * 8,
                                     CRW_G3(G[j], t[i][0], t[i][1], t[i][2]));
            }
            if (nc == CRW_WCB)      /* a fixed size: inline vector moves, no libc call */
                for (int p = 0; p < AL * AL; p++)
                    memcpy(U + ((p * unp + ob - ob0) * cig + c0) * 8, B[p], sizeof B[p]);
            else
                for (int p = 0; p < AL * AL; p++)
                    memcpy(U + ((p * unp + ob - ob0) * cig + c0) * 8, B[p],
                           nc * 8 * sizeof(WT));
        }
    }
}

static void CRW_WTRANS(int m, const WT *restrict w, ptrdiff_t cog, ptrdiff_t cig, int swap,
                       ptrdiff_t ob0, ptrdiff_t ob1, WT *restrict U, ptrdiff_t unp)
{
    static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                    {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                    {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                    {0, 0, 1}};
    if (m == 2)
        CRW_WTRANS_AL(4, G2, w, cog, cig, swap, ob0, ob1, U, unp);
    else
        CRW_WTRANS_AL(6, G4, w, cog, cig, swap, ob0, ob1, U, unp);
}
