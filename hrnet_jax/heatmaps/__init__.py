"""Keypoints as heatmaps, shared by the tasks that predict points (pose, landmarks): keypoint sets, the Gaussian
target codec and its decoding, the affine geometry of person and face crops, the heatmap loss and task base,
drawing, and prediction in boxes."""
