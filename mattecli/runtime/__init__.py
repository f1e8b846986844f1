"""Running networks and solvers, the same way for every method.

Modules, one job each: ``device`` (which device, model preparation, out-of-memory detection),
``precision`` (fp32 / fp16 / bf16 autocast), ``memory`` (memory plans from declared figures: the
budget, what fits, the least cap that works), ``tensors`` (images as normalised NCHW tensors,
resizing, padding), ``tiles`` (tile layout, raised-cosine blending, tiled runs with CUDA
out-of-memory retries), ``context`` (global pooled statistics recorded on a whole-image pass and
replayed on tiles), ``executor`` (each pass whole, tiled or reduced as the plan says, and the
record of what ran), ``fold`` and ``winograd`` (CPU rewrites of a loaded network, same results)
and ``allocator`` (the kept-heap setting only the CLI makes).

Nothing here knows any method: methods (``mattecli.methods``) call into it.
"""
