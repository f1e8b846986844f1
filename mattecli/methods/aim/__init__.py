"""AIM (``--method aim``): ``spec.py`` declares it, ``net.py`` is the network, ``processor.py`` the
official test strategies, ``convert.py`` the official checkpoint's keys."""
