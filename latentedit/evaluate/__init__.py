"""Measuring edits, generators and translators with one instrument, the attribute classifier.

- :mod:`~latentedit.evaluate.classifier`: the toyfaces attribute classifier (training, loading,
  prediction, features for FD-toy). Every other measurement goes through it.
- :mod:`~latentedit.evaluate.edit`: latent directions on generated or inverted sources (success, side
  effects, identity; ``latentedit evaluate edit``).
- :mod:`~latentedit.evaluate.generator`: a generator's FD-toy and attribute balance
  (``latentedit evaluate model``).
- :mod:`~latentedit.evaluate.translators`: image-to-image translators (StarGAN) on held-out toyfaces with
  their true counterfactuals (``latentedit evaluate stargan``).
- :mod:`~latentedit.evaluate.two_domain`: CycleGAN and pix2pix on the same footing (``latentedit evaluate
  cyclegan|pix2pix``).
"""
from latentedit.evaluate.classifier import AttributeClassifier, TrainOptions, evaluate_classifier, extract_features, \
    fd_toy, format_accuracy_table, load_attribute_classifier, load_classifier, predict_attributes, prepare_images, \
    read_classifier_metadata, shipped_classifier_path, train_classifier
from latentedit.evaluate.edit import edit_record, evaluate_direction, evaluate_directions, evaluate_edit_to_folder
from latentedit.evaluate.generator import attribute_frequency_hook, evaluate_generator, format_report, sample_images
from latentedit.evaluate.translators import evaluate_stargan, evaluate_stargan_to_folder
from latentedit.evaluate.two_domain import evaluate_translator_to_folder, evaluate_two_domain

__all__ = ["AttributeClassifier", "TrainOptions", "train_classifier", "load_classifier", "load_attribute_classifier",
           "predict_attributes",
           "prepare_images", "extract_features", "fd_toy", "evaluate_classifier", "format_accuracy_table",
           "read_classifier_metadata", "shipped_classifier_path",
           "evaluate_direction", "evaluate_directions", "edit_record", "evaluate_edit_to_folder",
           "evaluate_generator", "format_report", "sample_images", "attribute_frequency_hook",
           "evaluate_stargan", "evaluate_stargan_to_folder", "evaluate_two_domain", "evaluate_translator_to_folder"]
