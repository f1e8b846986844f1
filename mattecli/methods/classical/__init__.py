"""The classical methods (``--method cf``, ``--method knn``): ``spec.py`` declares both,
``processor.py`` runs pymatting's solvers through the shared executor and tiler."""
