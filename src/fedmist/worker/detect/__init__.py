"""MistNet for detection (YOLO): the edge and cloud runtimes of a detection job, and how one is recognised."""
