"""fer-tf: TensorFlow-native facial-emotion recognition on FER2013."""

from setuptools import find_packages, setup

setup(
    name="fer-tf",
    version="0.1.0",
    description=(
        "FER2013 as a TFDS dataset, tf.data pipelines, distributed training and "
        "KerasTuner sweeps for facial-emotion recognition."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fer_tfds", "fer_tfds.*", "trainers", "trainers.*",
                                    "tuning", "tuning.*", "tools", "tools.*"]),
    package_data={
        "fer_tfds.fer2013": [
            "README.md", "CITATIONS.bib", "TAGS.txt", "checksums.tsv", "dummy_data/*",
        ],
        "fer_tfds.fer2013_synthetic": ["README.md"],  # the dataset card (TFDS description)
    },
    install_requires=[
        "tensorflow>=2.16",
        "tensorflow-datasets>=4.9.7",
        "keras-tuner>=1.4",
        "numpy",
        "pandas",
        "absl-py",
        "pyarrow",  # fast path for well-formed CSVs (already a TFDS dependency)
        "pillow",  # decodes the image-folder release the way the CSV was made
        "matplotlib",  # training curves and confusion matrix of the trainer's report
        "tensorboard",  # the trainer's TensorBoard callback (not a TensorFlow dependency)
        # tools.predict: image decoding and the Haar face cascade (cv2.data.haarcascades);
        # OpenCV 5 no longer ships the cascades nor CascadeClassifier.
        "opencv-python-headless>=4.5,<5",
        "scikit-learn",  # KerasTuner's --tuner=bayesian (its Gaussian process)
        # The `tfds` command line imports these at start-up, even for builders
        # that use none of them (README, "The tfds command line"). apache-beam
        # >= 2.65 keeps the numpy/protobuf that TensorFlow uses; older ones
        # downgrade them.
        "apache-beam>=2.65",
        "mlcroissant>=1.0.9",
        "importlib_resources",
    ],
    extras_require={
        # dill: tfds.testing; scikit-image: a public-domain portrait for tools.predict's tests.
        "dev": ["pytest>=8", "ruff>=0.6", "dill", "scikit-image"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
    },
)
