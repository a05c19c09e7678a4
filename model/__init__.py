"""The moderation model: components, label mapping, and the Beam model handler."""

import os
import warnings

__version__ = "0.2.0"

# Beam's TensorFlow handler loads SavedModel folders with tf.keras, which needs Keras 2
# (the tf-keras package) under TensorFlow 2.16+. It must be set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter (CPU feature and CUDA probes) is not useful in job logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# tensorflow-hub 0.16 (imported by Beam's TensorFlow handler) still imports pkg_resources.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
