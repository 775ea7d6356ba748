"""Bag tools (`spvis-bag`): image bags in, node outputs recorded, scored against ground truth.

- `base`: `BagError`, `BagMessage`, `ImageFrame`, the typestore (kilted + spvis_msgs +
  vision_msgs), raw CDR helpers;
- `reader`: read rosbag2 (MCAP, sqlite3) and bare .mcap / .db3 with rosbags (+ the mcap
  library for truncated MCAP), counts checked against the metadata, `bag_info`, image decoding
  through the transport table;
- `writer`: `BagWriter`, `image_cdr`;
- `io`: all of the three above in one import.
- `make`: image bags from a video, an image folder or the synthetic generator, with a
  YouTube-VIS ground-truth sidecar keyed by header stamp.
- `play`: publish a bag with rclpy (recorded rate, a multiple, as fast as possible, or in
  lock-step with the node's answers).
- `record`: subscribe raw and write what arrives.
- `evaluate`: recorded InstanceArrays -> YouTube-VIS results -> AP and tracking metrics,
  report, overlay videos; dropped frames counted.
- `cli`: the `spvis-bag` command.

See docs/bags.md. Modules are imported on use (the CLI's play/record never load torch).
"""
