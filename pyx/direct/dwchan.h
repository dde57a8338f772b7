/* Template of the depthwise kernel with vectors over channels (the direct family's path
 * for small planes), included once per element type by direct_kernels.h (no include
 * guard, on purpose). Before each #include: CR_T, CR_VT (GCC vector of CR_VBYTES), CR_VL
 * (lanes), and the names CR_DWCHAN, CR_DWCHAN_ROWS (literally, e.g. cr_dwchan_f32);
 * #undef'd at the end. The AVX2 transposes it calls (cr_dwc_pack_*, cr_dwc_unpack_*) are
 * in dwchan_avx2.h.
 *
 * One call: nc <= CR_VL channels of one image, one output per input channel,
 *
 *   out[l, i, j] = bias[l] + sum_{u<kh, v<kw} wt[l, u, v] * xpad[l, i*sh + u*dh, j*sw + v*dw]
 *
 * (l < nc; planes h*w / oh*ow elements apart, starting at x / out). The planes are first
 * transposed into P[r][q][l] (the padded window the outputs read: hp = (oh-1)*sh +
 * (kh-1)*dh + 1 rows of wp = (ow-1)*sw + (kw-1)*dw + 1 columns, zero outside the input
 * and in lanes l >= nc), so every tap of an output position is one aligned vector of its
 * CR_VL channels times the tap's weights of those channels (a vector of Wt): no masks,
 * padding tests or partial vectors in the loop, whatever the plane's width. Each output
 * row is computed into R[j][l] and transposed back into the nc planes.
 *
 * P has room for CR_DWC_SLACK(sw) vectors past its hp*wp (zeroed here), R for
 * CR_DWC_RSLACK past its ow: positions are computed four at a time, the transposes move
 * blocks of CR_VL columns, and what lands past the end is never read back as a result.
 *
 * Every product is computed (zero lanes and padding included), so NaN and inf propagate
 * as in the reference; each sum runs over the taps in order (u, v). */

#ifndef CR_DWC_SLACK
#define CR_DWC_SLACK(sw) (3 * (sw) + 8)
#define CR_DWC_RSLACK 8
#endif

/* Output rows [0, oh) into R then out: KH, KW literals (3, 5) or 0 for the runtime kh, kw. */
#define CR_DWC_BODY(KH, KW)                                                               \
    for (ptrdiff_t i = 0; i < oh; i++) {                                                  \
        for (ptrdiff_t j = 0; j < ow; j += 4) {                                           \
            CR_VT a0 = b, a1 = b, a2 = b, a3 = b;                                         \
            const ptrdiff_t kh_ = (KH) ? (KH) : kh, kw_ = (KW) ? (KW) : kw;               \
            _Pragma("GCC unroll 5")                                                       \
            for (ptrdiff_t u = 0; u < kh_; u++) {                                         \
                const CR_T *pr = P + ((i * sh + u * dh) * wp + j * sw) * CR_VL;           \
                _Pragma("GCC unroll 5")                                                   \
                for (ptrdiff_t v = 0; v < kw_; v++) {                                     \
                    CR_VT wv, p0, p1, p2, p3;                                             \
                    const CR_T *pq = pr + v * dw * CR_VL;                                 \
                    memcpy(&wv, Wt + (u * kw_ + v) * CR_VL, sizeof wv);                   \
                    memcpy(&p0, pq, sizeof p0);                                           \
                    memcpy(&p1, pq + sw * CR_VL, sizeof p1);                              \
                    memcpy(&p2, pq + 2 * sw * CR_VL, sizeof p2);                          \
                    memcpy(&p3, pq + 3 * sw * CR_VL, sizeof p3);                          \
                    a0 += wv * p0;                                                        \
                    a1 += wv * p1;                                                        \
                    a2 += wv * p2;                                                        \
                    a3 += wv * p3;                                                        \
                }                                                                         \
            }                                                                             \
            memcpy(R + j * CR_VL, &a0, sizeof a0);                                        \
            memcpy(R + (j + 1) * CR_VL, &a1, sizeof a1);                                  \
            memcpy(R + (j + 2) * CR_VL, &a2, sizeof a2);                                  \
            memcpy(R + (j + 3) * CR_VL, &a3, sizeof a3);                                  \
        }                                                                                 \
        CR_DWC_UNPACK(R, ow, nc, out + i * ow, oh * ow, (oh - i) * ow);                   \
    }

CR_NOINLINE void CR_DWCHAN(const CR_T *restrict x, ptrdiff_t h, ptrdiff_t w, ptrdiff_t nc,
                           const CR_T *restrict wt, const CR_T *restrict bias,
                           CR_T *restrict out, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t kh,
                           ptrdiff_t kw, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t dh,
                           ptrdiff_t dw, ptrdiff_t pt, ptrdiff_t pl, CR_T *restrict P,
                           CR_T *restrict R, CR_T *restrict Wt) {
    const ptrdiff_t hp = (oh - 1) * sh + (kh - 1) * dh + 1;
    const ptrdiff_t wp = (ow - 1) * sw + (kw - 1) * dw + 1;
    const ptrdiff_t kk = kh * kw;
    /* the window's input columns [qlo, qhi) (window column q reads input column q - pl) */
    ptrdiff_t qlo = pl < 0 ? 0 : pl, qhi = w + pl < wp ? w + pl : wp;
    if (qhi < qlo) qhi = qlo;
    for (ptrdiff_t r = 0; r < hp; r++) {
        const ptrdiff_t row = r - pt;
        CR_T *pr = P + r * wp * CR_VL;
        /* the whole row zero first; a transposed block may run past the row's end into
           the next row (zeroed after it) or the slack */
        for (ptrdiff_t e = 0; e < wp * CR_VL; e++) pr[e] = 0;
        if (row >= 0 && row < h && qhi > qlo)
            CR_DWC_PACK(x + row * w + (qlo - pl), h * w, nc, qhi - qlo, pr + qlo * CR_VL);
    }
    for (ptrdiff_t e = hp * wp * CR_VL; e < (hp * wp + CR_DWC_SLACK(sw)) * CR_VL; e++) P[e] = 0;
    for (ptrdiff_t k = 0; k < kk; k++)
        for (ptrdiff_t l = 0; l < CR_VL; l++) Wt[k * CR_VL + l] = l < nc ? wt[l * kk + k] : 0;
    CR_VT b;
    for (ptrdiff_t l = 0; l < CR_VL; l++) b[l] = l < nc ? bias[l] : 0;
    if (kh == 3 && kw == 3) {
        CR_DWC_BODY(3, 3)
    } else if (kh == 5 && kw == 5) {
        CR_DWC_BODY(5, 5)
    } else {
        CR_DWC_BODY(0, 0)
    }
}

#undef CR_DWCHAN
#undef CR_DWC_PACK
#undef CR_DWC_UNPACK
