"""Delivery: getting a model from an artifact to serving users, between the feedback loop (above)
and the runtimes, local services and server (below).

    runtime.py          which Runtime an environment gets (chosen once, here)
    deploy.py           promotion check → runtime deploy → smoke test → verified-release record
    publish.py          build both images of a model, push them, record the release
    promotion.py        verified releases and promoting one by digest to the next environment
    release.py          a model released from Python (the feedback loop's release): build, push, deploy
    remote_training.py  `toolkit train --remote`: the dataset uploaded, the training Job run
"""
