"""Live rooms over WebRTC: the only asynchronous part of roomfuse.

``server`` (`roomfuse serve`) hosts rooms: ``signalling`` is the HTTP contract and its
validation, ``room`` the participants and the compositor loop, ``compositor`` the
pipeline run in the room's executor thread, ``encoder`` the one encode of each composite
shared by every viewer, ``tracks`` the newest-frame slots and the composite track,
``ice`` which addresses and servers ICE may use. The page a browser opens is in
``static/``. ``client`` (`roomfuse join`) takes part in a room from the command line.
"""
