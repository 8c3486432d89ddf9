"""Installation script.

``ops``, ``cli`` and ``pretrained`` live at the top of the repository (that is the project layout) but are
installed as ``latentedit.ops``, ``latentedit.cli`` and ``latentedit.pretrained`` so that nothing named
``ops`` or ``cli`` lands at the top of a user's site-packages.
"""
from setuptools import setup

PACKAGE_DIR = {
    "latentedit": "latentedit",
    "latentedit.ops": "ops",
    "latentedit.cli": "cli",
    "latentedit.pretrained": "pretrained",
}

setup(
    name="latentedit",
    version="0.1.0",
    description="Edit images in the latent space of a StyleGAN2 generator: inversion, PULSE, directions, baselines.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "latentedit",
        "latentedit.model",
        "latentedit.checkpoints",
        "latentedit.invert",
        "latentedit.pulse",
        "latentedit.directions",
        "latentedit.evaluate",
        "latentedit.baselines",
        "latentedit.data",
        "latentedit.train",
        "latentedit.photos",
        "latentedit.serve",
        "latentedit.ops",
        "latentedit.cli",
        "latentedit.pretrained",
    ],
    package_dir=PACKAGE_DIR,
    package_data={
        "latentedit.ops": ["csrc/*.cpp", "csrc/*.cu", "csrc/*.h"],
        "latentedit.pretrained": ["*.safetensors", "*.md", "*.json"],
    },
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "pillow>=10",
        "ninja",
        "click>=8.1",
        "lpips>=0.1.4",
        "scipy>=1.10",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "torchvision",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        # MTCNN face detection with its weights inside the wheel (nothing downloaded); 2.6.0 pins torch < 2.3 and
        # numpy < 2. It imports requests at import time, though latentedit never uses the network.
        "facenet-pytorch==2.5.3",
        "requests",
    ],
    extras_require={
        # scikit-image ships the astronaut photograph used as a real-photo test input (SPEC §8); Playwright drives
        # Debian's chromium (apt-get install chromium; never `playwright install`) in tests/test_serve.py.
        "test": ["pytest>=7", "hypothesis>=6", "scikit-image>=0.21", "playwright"],
        # `latentedit serve`, the web demo (gradio pins pillow < 13, one reason it is not a core dependency).
        "demo": ["gradio>=5,<7"],
    },
    entry_points={"console_scripts": ["latentedit=latentedit.cli.main:main"]},
)
