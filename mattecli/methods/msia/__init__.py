"""MSIA (``--method msia``): ``spec.py`` declares it, ``net.py`` is the network (with its
reconstruction assumptions), ``processor.py`` the test rule. No official checkpoint exists, so there
is no ``convert.py``: only files of our layout are imported."""
