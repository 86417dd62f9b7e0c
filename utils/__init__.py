"""Framework-free code shared by NEZHA-TensorFlow/ and TinyBERT/ (tokenizer, tasks, metrics, data)."""
