"""``adaptlab ui``: a local web page over a runs folder (:mod:`.app`, :mod:`.folders`)."""
