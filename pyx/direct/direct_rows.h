/* Template of the short-row helpers of the direct family (band packing, tile copy-out),
 * included once per element type by direct_kernels.h (no include guard, on purpose).
 *
 *   CR_COPY_ROWS   nrows rows: dst[r*ds + 0:n] := src[r*ss + 0:n]
 *   CR_ZERO_ROWS   nrows rows: dst[r*ds + 0:n] := 0
 *   CR_DEINT2_ROWS nrows rows: de[0:ne] := src[0:2*ne:2], dod[0:no] := src[1:2*no:2]
 *                  (no <= ne <= no + 1), source rows ss apart, destination rows ds apart
 *   CR_COPY, CR_DEINT2, CR_STORE_PART: one row / one partial vector (internal)
 *
 * Before each #include: CR_T (element), CR_VT (GCC vector of CR_VBYTES), CR_VL (lanes),
 * the names above (literally, e.g. #define CR_COPY_ROWS cr_copy_rows_f32), and with
 * AVX-512 the intrinsic shim CR_MASK, CR_LOADU, CR_STOREU, CR_LOADU_Z (zero-masked load),
 * CR_STOREU_M (masked store), CR_PERMUTE2 (two-source lane permute), CR_IDX_EVEN,
 * CR_IDX_ODD (its index vectors picking lanes 0, 2, 4, ... / 1, 3, 5, ...). All are
 * #undef'd at the end but CR_V512, CR_MASK and CR_STOREU_M, which direct_block.h (next)
 * stores with and #undef's.
 *
 * Rows here are tens of elements: a libc memcpy/memset call costs more than the copy, so
 * the Cython side calls these once per batch of rows; they are compiled inside
 * direct_kernels.h's no-tree-loop-distribute-patterns region and kept out of line
 * (noinline), so GCC cannot turn their loops back into libc calls in the caller. */

#if defined(__AVX512F__)
#define CR_FULL ((CR_MASK)((1u << CR_VL) - 1u))
/* First n lanes (0 <= n; n >= CR_VL gives all). */
#define CR_FIRST(n) ((n) >= CR_VL ? CR_FULL : (CR_MASK)((1u << (n)) - 1u))
#endif

static inline void CR_COPY(CR_T *restrict dst, const CR_T *restrict src, ptrdiff_t n) {
#if defined(__AVX512F__)
    ptrdiff_t i = 0;
    for (; i + CR_VL <= n; i += CR_VL) CR_STOREU(dst + i, CR_LOADU(src + i));
    if (i < n) {
        CR_MASK m = (CR_MASK)((1u << (n - i)) - 1u);
        CR_STOREU_M(dst + i, m, CR_LOADU_Z(m, src + i));
    }
#else
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = src[i];
#endif
}

CR_NOINLINE void CR_COPY_ROWS(CR_T *restrict dst, ptrdiff_t ds, const CR_T *restrict src,
                              ptrdiff_t ss, ptrdiff_t nrows, ptrdiff_t n) {
#if defined(__AVX512F__)
    /* the tail mask once for all rows */
    const ptrdiff_t nf = n - n % CR_VL;
    const CR_MASK m = (CR_MASK)((1u << (n - nf)) - 1u);
    for (ptrdiff_t r = 0; r < nrows; r++) {
        const CR_T *s = src + r * ss;
        CR_T *d = dst + r * ds;
        for (ptrdiff_t i = 0; i < nf; i += CR_VL) CR_STOREU(d + i, CR_LOADU(s + i));
        if (m) CR_STOREU_M(d + nf, m, CR_LOADU_Z(m, s + nf));
    }
#else
    for (ptrdiff_t r = 0; r < nrows; r++) CR_COPY(dst + r * ds, src + r * ss, n);
#endif
}

CR_NOINLINE void CR_ZERO_ROWS(CR_T *restrict dst, ptrdiff_t ds, ptrdiff_t nrows, ptrdiff_t n) {
    for (ptrdiff_t r = 0; r < nrows; r++)
        for (ptrdiff_t i = 0; i < n; i++) dst[r * ds + i] = 0;
}

static inline void CR_DEINT2(const CR_T *restrict src, CR_T *restrict de, ptrdiff_t ne,
                             CR_T *restrict dod, ptrdiff_t no) {
#if defined(__AVX512F__)
    const __m512i ie = CR_IDX_EVEN, io = CR_IDX_ODD;
    ptrdiff_t m = 0, n = ne + no;          /* n input elements */
    for (; m + CR_VL <= no; m += CR_VL) {
        CR_V512 a = CR_LOADU(src + 2 * m), b = CR_LOADU(src + 2 * m + CR_VL);
        CR_STOREU(de + m, CR_PERMUTE2(a, ie, b));
        CR_STOREU(dod + m, CR_PERMUTE2(a, io, b));
    }
    while (m < ne) {
        ptrdiff_t left = n - 2 * m;        /* input elements left, 1 .. 2*CR_VL */
        if (left > 2 * CR_VL) left = 2 * CR_VL;
        CR_MASK la = CR_FIRST(left);
        CR_MASK lb = left <= CR_VL ? (CR_MASK)0 : (CR_MASK)((1u << (left - CR_VL)) - 1u);
        CR_V512 a = CR_LOADU_Z(la, src + 2 * m);
        CR_V512 b = CR_LOADU_Z(lb, src + 2 * m + CR_VL);
        ptrdiff_t ke = ne - m < CR_VL ? ne - m : CR_VL, ko = no - m < CR_VL ? no - m : CR_VL;
        CR_STOREU_M(de + m, (CR_MASK)((1u << ke) - 1u), CR_PERMUTE2(a, ie, b));
        if (ko > 0)
            CR_STOREU_M(dod + m, (CR_MASK)((1u << ko) - 1u), CR_PERMUTE2(a, io, b));
        m += CR_VL;
    }
#else
    ptrdiff_t m = 0;
    for (; m < no; m++) { de[m] = src[2 * m]; dod[m] = src[2 * m + 1]; }
    for (; m < ne; m++) de[m] = src[2 * m];
#endif
}

CR_NOINLINE void CR_DEINT2_ROWS(const CR_T *restrict src, ptrdiff_t ss, CR_T *restrict de,
                                CR_T *restrict dod, ptrdiff_t ds, ptrdiff_t nrows,
                                ptrdiff_t ne, ptrdiff_t no) {
#if defined(__AVX512F__)
    if (ne <= CR_VL) {            /* one masked step per row; masks computed once */
        const __m512i ie = CR_IDX_EVEN, io = CR_IDX_ODD;
        const ptrdiff_t n = ne + no;
        const CR_MASK la = CR_FIRST(n);
        const CR_MASK lb = n <= CR_VL ? (CR_MASK)0 : (CR_MASK)((1u << (n - CR_VL)) - 1u);
        const CR_MASK me = CR_FIRST(ne), mo = CR_FIRST(no);
        for (ptrdiff_t r = 0; r < nrows; r++) {
            const CR_T *sr = src + r * ss;
            CR_V512 a = CR_LOADU_Z(la, sr), b = CR_LOADU_Z(lb, sr + CR_VL);
            CR_STOREU_M(de + r * ds, me, CR_PERMUTE2(a, ie, b));
            CR_STOREU_M(dod + r * ds, mo, CR_PERMUTE2(a, io, b));
        }
        return;
    }
#endif
    for (ptrdiff_t r = 0; r < nrows; r++)
        CR_DEINT2(src + r * ss, de + r * ds, ne, dod + r * ds, no);
}

/* dst[0:n] := v[0:n], 0 < n < CR_VL. */
static inline void CR_STORE_PART(CR_T *dst, CR_VT v, ptrdiff_t n) {
#if defined(__AVX512F__)
    CR_STOREU_M(dst, (CR_MASK)((1u << n) - 1u), (CR_V512)v);
#else
    memcpy(dst, &v, n * sizeof(CR_T));
#endif
}

#if defined(__AVX512F__)
#undef CR_FULL
#undef CR_FIRST
#undef CR_LOADU
#undef CR_STOREU
#undef CR_LOADU_Z
#undef CR_PERMUTE2
#undef CR_IDX_EVEN
#undef CR_IDX_ODD
#endif
#undef CR_COPY
#undef CR_COPY_ROWS
#undef CR_ZERO_ROWS
#undef CR_DEINT2
#undef CR_DEINT2_ROWS
