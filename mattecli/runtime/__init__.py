"""Running networks and solvers, the same way for every method.

Modules, one job each: ``device`` (which device, model preparation, out-of-memory detection),
``precision`` (fp32 / fp16 / bf16 autocast), ``memory`` (``--max-memory`` budgets, what is in use,
measured memory per pixel), ``tensors`` (images as normalised NCHW tensors, resizing, padding),
``tiles`` (tile layout, raised-cosine blending, tiled runs with out-of-memory retries),
``context`` (global pooled statistics recorded on a whole-image pass and replayed on tiles) and
``executor`` (``auto`` / ``whole`` / ``tiled`` and their fallbacks; tile and batch planning).

Nothing here knows any method: methods (``mattecli.methods``) call into it.
"""
