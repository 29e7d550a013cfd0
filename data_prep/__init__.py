"""Data preparation for Chinese BART pre-training: corpus -> packed, tokenized shards, and BART noise.

This package never imports ``pretrain``.
"""
