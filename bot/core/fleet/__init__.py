"""The Rekognition model fleet: one poller, one start path, one stop path, pure decisions.

`poller` reads the versions once per tick, moves the operations in flight along (`lifecycle`,
`training`), then lets the cost guard (`guard`) judge the same snapshot; `decisions` are pure
functions of (snapshot, stored state, settings, now); `state` holds the nouns and the `Store`
port; `arns` is the one ARN helper. See docs/architecture.md.
"""
