"""SIM (``--method sim``): ``spec.py`` declares it, ``net.py`` holds the matting network and the patch
classifier, ``encode.py`` the official input encodings, ``semantic.py`` the semantic trimap (patch
analysis and its file formats), ``processor.py`` the test strategies, ``convert.py`` the official
checkpoints' keys."""
