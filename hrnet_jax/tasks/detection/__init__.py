"""Object detection and instance segmentation on HRNetV2p (issues #19, #20): COCO box and mask evaluation so far;
the detectors, their data and their ``TaskSpec`` come next (the task is registered in ``hrnet_jax.tasks``)."""
