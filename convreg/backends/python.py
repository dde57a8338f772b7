"""The pure-Python reference backend: plain loops over the definition, the oracle.

    out[n, o, i, j] = bias[o] + sum_{c<cig} sum_{p<kh} sum_{q<kw}
                      w[o, c, p, q] * xpad[n, g*cig + c, i*sh + p*dh, j*sw + q*dw]

with g = o // cog. Sums run in Python floats (IEEE double) whatever the dtype; no NumPy
arithmetic takes part. Padding modes are mapped inline, independently of the
compiled padding helper, so the harness checks that helper too.
"""

from __future__ import annotations

import numpy as np

from .._frontend.hyper import source_index
from .base import Backend


class PythonBackend(Backend):
    name = "python"
    description = "pure-Python reference loops (the oracle; slow)"
    padding_modes = frozenset({"zeros", "reflect", "replicate", "circular"})

    def conv2d(self, spec, x, w, b):
        xs, ws = x.tolist(), w.tolist()
        bs = b.tolist() if b is not None else [0.0] * spec.c_out
        mode = spec.padding_mode
        # For each output row/column, the input row/column each kernel tap reads (or None).
        rows = [[source_index(i * spec.sh + p * spec.dh - spec.pt, spec.h, mode)
                 for p in range(spec.kh)] for i in range(spec.oh)]
        cols = [[source_index(j * spec.sw + q * spec.dw - spec.pl, spec.w, mode)
                 for q in range(spec.kw)] for j in range(spec.ow)]
        out = np.empty(spec.output_shape, dtype=np.float64)
        for n in range(spec.n):
            for o in range(spec.c_out):
                c0 = (o // spec.cog) * spec.cig
                planes = [(xs[n][c0 + c], ws[o][c]) for c in range(spec.cig)]
                for i in range(spec.oh):
                    for j in range(spec.ow):
                        acc = float(bs[o])
                        for plane, wc in planes:
                            for p, r in enumerate(rows[i]):
                                wrow = wc[p]
                                xrow = plane[r] if r is not None else None
                                for q, s in enumerate(cols[j]):
                                    # A tap on zero padding still multiplies: inf*0 is NaN.
                                    v = xrow[s] if xrow is not None and s is not None else 0.0
                                    acc += wrow[q] * v
                        out[n, o, i, j] = acc
        with np.errstate(over="ignore"):  # float32 overflow to inf is the IEEE result
            return out.astype(spec.dtype, copy=False)

    # ------------------------------------------------------------- gradients
    def _taps(self, spec):
        """Per output row (column): the input row (column) each kernel tap reads, or None."""
        mode = spec.padding_mode
        rows = [[source_index(i * spec.sh + p * spec.dh - spec.pt, spec.h, mode)
                 for p in range(spec.kh)] for i in range(spec.oh)]
        cols = [[source_index(j * spec.sw + q * spec.dw - spec.pl, spec.w, mode)
                 for q in range(spec.kw)] for j in range(spec.ow)]
        return rows, cols

    def conv2d_input(self, spec, grad_output, w):
        """d out / d x: every product go[n,o,i,j]*w[o,c,p,q] added onto the input element
        its tap read (padding taps read nothing; padding modes fold back here)."""
        gos, ws = grad_output.tolist(), w.tolist()
        rows, cols = self._taps(spec)
        gx = [[[[0.0] * spec.w for _ in range(spec.h)] for _ in range(spec.c_in)]
              for _ in range(spec.n)]
        for n in range(spec.n):
            for o in range(spec.c_out):
                c0 = (o // spec.cog) * spec.cig
                for c in range(spec.cig):
                    plane, wc = gx[n][c0 + c], ws[o][c]
                    for i in range(spec.oh):
                        grow = gos[n][o][i]
                        for p, r in enumerate(rows[i]):
                            if r is None:
                                continue
                            target, wrow = plane[r], wc[p]
                            for j in range(spec.ow):
                                g = grow[j]
                                for q, s in enumerate(cols[j]):
                                    if s is not None:
                                        target[s] += g * wrow[q]
        with np.errstate(over="ignore"):
            return np.array(gx, dtype=np.float64).reshape(spec.input_shape).astype(
                spec.dtype, copy=False)

    def conv2d_weight(self, spec, x, grad_output):
        """d out / d w: sum over n, i, j of go[n,o,i,j] * (the input element tap (p, q)
        reads, 0.0 on zero padding)."""
        xs, gos = x.tolist(), grad_output.tolist()
        rows, cols = self._taps(spec)
        out = np.empty(spec.weight_shape, dtype=np.float64)
        for o in range(spec.c_out):
            c0 = (o // spec.cog) * spec.cig
            for c in range(spec.cig):
                for p in range(spec.kh):
                    for q in range(spec.kw):
                        acc = 0.0
                        for n in range(spec.n):
                            plane, gplane = xs[n][c0 + c], gos[n][o]
                            for i in range(spec.oh):
                                r = rows[i][p]
                                xrow = plane[r] if r is not None else None
                                grow = gplane[i]
                                for j in range(spec.ow):
                                    s = cols[j][q]
                                    v = xrow[s] if xrow is not None and s is not None else 0.0
                                    acc += grow[j] * v
                        out[o, c, p, q] = acc
        with np.errstate(over="ignore"):
            return out.astype(spec.dtype, copy=False)
