"""convreg on ``dask.array``: the batch axis split into chunks, each chunk one task.

    >>> import dask.array as da, numpy as np, convreg.dask
    >>> x = da.ones((64, 8, 16, 16), chunks=(8, 8, 16, 16), dtype=np.float32)
    >>> y = convreg.dask.conv2d(x, np.ones((4, 8, 3, 3), np.float32), padding=1)
    >>> y.shape, y.chunks[0], y.dtype
    ((64, 4, 16, 16), (8, 8, 8, 8, 8, 8, 8, 8), dtype('float32'))

Also ``conv_transpose2d`` and the gradient operations ``conv2d_input`` (batch-chunked like
``conv2d``), ``conv2d_weight`` (one partial gradient per batch chunk, summed) and
``conv2d_bias``. Needs the optional dependencies: ``pip install 'convreg[dask]'``.
"""

from __future__ import annotations

import numpy as np

from . import grad as _grad
from ._api import conv2d as _conv2d
from ._api import conv_transpose2d as _conv_transpose2d
from ._errors import ConvSpecError, ConvTypeError
from ._frontend.grad import prepare_input_grad, prepare_transpose
from ._frontend.spec import prepare
from ._settings.threads import get_threads, use_threads


def _worker_threads():
    """Threads of the dask worker (or local pool) running the current task."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        state = getattr(worker, "state", worker)
        return max(1, int(getattr(state, "nthreads", None) or worker.nthreads))
    import dask
    from dask.system import CPU_COUNT

    scheduler = dask.config.get("scheduler", None)
    if scheduler in ("sync", "synchronous", "single-threaded"):
        return 1
    pool = dask.config.get("pool", None)
    size = getattr(pool, "_max_workers", None) or dask.config.get("num_workers", None)
    return max(1, int(size or CPU_COUNT))


def kernel_threads() -> int:
    """Kernel threads for one task: the threads this process may use, divided among the
    worker's threads (at least 1), so that worker threads x kernel threads never exceed
    them. "May use" is convreg's thread setting as resolved in the worker (``set_threads``
    > ``CONVREG_THREADS`` > config > the smallest of CPU affinity, cgroup quota,
    ``OMP_NUM_THREADS`` and the OpenMP runtime's limit). A dask nanny starts its worker
    processes with ``OMP_NUM_THREADS=1`` (``distributed.nanny.pre-spawn-environ``): several
    worker processes then share a machine without oversubscribing it."""
    return max(1, get_threads() // _worker_threads())


def _block(xb, *, weight, bias, hyper, backend):
    if xb.shape[0] == 0:
        return _conv2d(xb, weight, bias, backend=backend, **hyper)
    return _threaded(_conv2d, xb, weight, bias, backend=backend, **hyper)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, backend=None):
    """``convreg.conv2d`` over a ``dask.array`` input (N, C_in, H, W), lazily.

    The arguments are checked at once, by the same front end as ``convreg.conv2d``, on
    the input's shape and dtype and on the real weight and bias. The result is a lazy
    ``dask.array`` (N, C_out, H_out, W_out) of the input's dtype, with the input's chunks
    along the batch axis: one ``map_blocks`` task per batch chunk.

    Chunks along C_in, H or W are merged first (``x.rechunk({1: -1, 2: -1, 3: -1})``):
    a convolution needs every input channel and a halo of rows and columns around each
    output, so each task holds whole images; choose the batch chunk size so that
    (batch chunk) x C_in x H x W fits in a worker's memory. An input whose C/H/W chunk
    sizes are unknown (NaN) is refused: call ``x.compute_chunk_sizes()`` first.
    A 3-D (unbatched) input is handled as a batch of one and returns a 3-D result.

    ``weight`` and ``bias`` are NumPy arrays (a dask array is computed once first). Each
    task runs with ``max(1, threads // worker threads)`` kernel threads (``use_threads``;
    see :func:`kernel_threads`), so worker threads x kernel threads never exceed the
    threads the worker may use: with ``dask.distributed`` the worker's ``nthreads``, else
    the local threaded scheduler's pool size (1 for the synchronous scheduler).
    """
    import dask
    import dask.array as da

    if isinstance(x, da.Array) and x.ndim == 3:
        out = conv2d(x[None], weight, bias, stride, padding, dilation, groups,
                     padding_mode, backend=backend)
        return out[0]
    x = _batch_chunked(x, "input", "conv2d", "3-D (C_in, H, W) or 4-D (N, C_in, H, W)")
    weight, bias = _in_memory(weight), _in_memory(bias)
    # The front end on a one-image stand-in of the input (nothing allocated): validates
    # every argument and the dtypes together, and gives C-contiguous weight and bias.
    stand_in = np.broadcast_to(np.zeros((), dtype=x.dtype), (1,) + tuple(x.shape[1:]))
    spec, _, w, b = prepare(stand_in, weight, bias, stride, padding, dilation, groups,
                            padding_mode)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                 padding_mode=padding_mode)
    # Weights reach the tasks as dask.delayed objects passed by keyword: each becomes ONE
    # key of the graph that every task depends on, so the threaded scheduler shares the
    # one array and the distributed scheduler ships it to each worker once (it is not
    # serialised into every task, as a plain ndarray argument may be).
    w_key = dask.delayed(w, pure=True)
    b_key = None if b is None else dask.delayed(b, pure=True)
    return x.map_blocks(
        _block, weight=w_key, bias=b_key, hyper=hyper, backend=backend,
        dtype=x.dtype, chunks=(x.chunks[0], (spec.c_out,), (spec.oh,), (spec.ow,)),
        meta=np.empty((0, 0, 0, 0), dtype=x.dtype), token="convreg-conv2d")


def _batch_chunked(x, name, func, shapes="4-D (N, C, H, W)"):
    """``x`` as a 4-D dask array whose C/H/W are whole (merged), batch chunks kept."""
    import dask.array as da

    if not isinstance(x, da.Array):
        raise ConvTypeError(f"convreg.dask.{func}: {name} must be a dask.array.Array, but got "
                            f"{type(x).__name__}; use convreg's in-memory {func} instead")
    if x.ndim != 4:
        raise ConvSpecError(f"convreg.dask.{func}: {name} must be {shapes}, but got {name} "
                            f"of shape {x.shape}")
    if any(np.isnan(s) for s in x.shape[1:]):
        raise ConvSpecError(f"{name} has unknown chunk sizes along C/H/W (shape {x.shape}); "
                            "call compute_chunk_sizes() first")
    if any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({1: -1, 2: -1, 3: -1})
    return x


def _in_memory(a):
    import dask.array as da

    return a.compute() if isinstance(a, da.Array) else a


def _threaded(fn, *args, **kwargs):
    """Run one task's convreg call with the worker's share of the kernel threads."""
    with use_threads(kernel_threads()):
        return fn(*args, **kwargs)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, backend=None):
    """``convreg.conv_transpose2d`` over a batch-chunked ``dask.array`` (N, C_in, H, W),
    lazily: checked at once on the shapes, one task per batch chunk (see :func:`conv2d`
    for chunks, weights and threads)."""
    import dask

    x = _batch_chunked(x, "input", "conv_transpose2d")
    weight, bias = _in_memory(weight), _in_memory(bias)
    stand_in = np.broadcast_to(np.zeros((), dtype=x.dtype), (1,) + tuple(x.shape[1:]))
    spec, _, w, b = prepare_transpose(stand_in, weight, bias, stride, padding, output_padding,
                                      groups, dilation)
    hyper = dict(stride=stride, padding=padding, output_padding=output_padding,
                 groups=groups, dilation=dilation)
    # The transposed call's output is the input of the forward spec it runs.
    def block(xb, w, b):
        return _threaded(_conv_transpose2d, xb, w, b, backend=backend, **hyper)

    return x.map_blocks(
        block, dask.delayed(w, pure=True), None if b is None else dask.delayed(b, pure=True),
        dtype=x.dtype, chunks=(x.chunks[0], (spec.c_in,), (spec.h,), (spec.w,)),
        meta=np.empty((0, 0, 0, 0), dtype=x.dtype), token="convreg-conv-transpose2d")


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", *, backend=None):
    """``convreg.grad.conv2d_input`` with a batch-chunked ``dask.array`` ``grad_output``:
    one task per batch chunk, each the input gradient of its images."""
    import dask

    go = _batch_chunked(grad_output, "grad_output", "conv2d_input")
    weight = _in_memory(weight)
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != 4 or input_size[0] != go.shape[0]:
        raise ConvSpecError(f"input_size must be (N, C_in, H, W) with N = grad_output's batch "
                            f"{go.shape[0]}, but got input_size={input_size}")
    # Checked at once on one image (the same rules as the in-memory call).
    one = np.broadcast_to(np.zeros((), dtype=go.dtype), (1,) + tuple(go.shape[1:]))
    prepare_input_grad((1,) + input_size[1:], weight, one, stride, padding, dilation, groups,
                       padding_mode)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                 padding_mode=padding_mode)

    def block(gb, w):
        return _threaded(_grad.conv2d_input, (gb.shape[0],) + input_size[1:], w, gb,
                         backend=backend, **hyper)

    return go.map_blocks(block, dask.delayed(np.ascontiguousarray(weight), pure=True),
                         dtype=go.dtype,
                         chunks=(go.chunks[0],) + tuple((s,) for s in input_size[1:]),
                         meta=np.empty((0, 0, 0, 0), dtype=go.dtype),
                         token="convreg-conv2d-input")


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1,
                  groups=1, padding_mode="zeros", *, backend=None):
    """``convreg.grad.conv2d_weight`` over batch-chunked ``dask.array`` ``input`` and
    ``grad_output``: one partial weight gradient per batch chunk, then their sum (a lazy
    array of ``weight_size``)."""
    import dask
    import dask.array as da

    x = _batch_chunked(input, "input", "conv2d_weight")
    go = _batch_chunked(grad_output, "grad_output", "conv2d_weight")
    if go.shape[0] != x.shape[0]:
        raise ConvSpecError(f"grad_output must have the input's batch {x.shape[0]}, but got "
                            f"grad_output of shape {go.shape}")
    go = go.rechunk({0: x.chunks[0]})
    weight_size = tuple(int(s) for s in weight_size)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                 padding_mode=padding_mode)
    parts = [dask.delayed(_threaded)(_grad.conv2d_weight, xb, weight_size, gb,
                                     backend=backend, **hyper)
             for xb, gb in zip(x.to_delayed().ravel(), go.to_delayed().ravel())]
    total = dask.delayed(sum)(parts[1:], parts[0]) if len(parts) > 1 else parts[0]
    return da.from_delayed(total, shape=weight_size, dtype=x.dtype)


def conv2d_bias(grad_output):
    """``convreg.grad.conv2d_bias`` of a ``dask.array`` (N, C_out, H, W): its sum over
    batch and space, lazily."""
    go = _batch_chunked(grad_output, "grad_output", "conv2d_bias")
    return go.sum(axis=(0, 2, 3))
