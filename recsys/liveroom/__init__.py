"""In the live room: real-time room metrics, repeated-question clusters, host triggers.

``RoomAggregator`` keeps sliding 1, 5 and 15-minute windows per live room over a stream of
event batches (``events.py`` parses and checks them), exactly equal to ``batch_snapshot``'s
recompute; ``QuestionClusterer`` groups the audience's questions online; ``TriggerEngine``
suggests actions to the host; ``LiveRooms`` puts them behind one store interface that the
HTTP service's dashboard reads (``http.py``).
"""
