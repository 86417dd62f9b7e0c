"""TinyBERT's training core, beside the model package `transformer/`; the entry scripts at TinyBERT/ only parse
flags and call it.

    runtime.py        one process or torchrun DDP (CUDA/NCCL, CPU/gloo), seeding, mixed precision and the
                      optimizer step, weight-decay groups, output-directory checks
    losses.py         layer mapping, attention / hidden-state MSE, soft cross-entropy
    pregenerated.py   pregenerate_training_data.py's epoch files: written from a corpus, read back as a dataset
    general.py        general distillation (general_distill.py), with exact resume
    task_data.py      task examples -> padded tensors; teachers' label orders
    task.py           task distillation and evaluation (task_distill.py)
    augmentation.py   data augmentation (data_augmentation.py)
    comparison.py     a student's size and speed beside its teacher's (compare_models.py)
"""
