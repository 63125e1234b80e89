"""The Rekognition model fleet: one poller, one start path, one stop path, pure decisions.

- `poller`: the one loop. Each tick reads the project's versions once (one
  DescribeProjectVersions), then moves the operations in flight along (start, stop, train),
  then lets the cost guard observe runs and judge idleness on that same snapshot. One poller
  at a time holds the leader lease, so two instances on one database never act twice.
- `decisions`: pure functions of (snapshot, stored state, settings, now) returning actions.
- `arns`: the one ARN helper.
- `billing`: the one rule for when a run starts and ends for billing.
"""
