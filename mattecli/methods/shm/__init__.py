"""SHM (``--method shm``): ``spec.py`` declares it (two variants), ``net.py`` holds both networks,
``processor.py`` the test strategies, ``convert.py`` the MindSpore checkpoint's keys."""
