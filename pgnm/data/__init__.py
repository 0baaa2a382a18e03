"""Data: synthetic RadImageNet-like images, WebDataset shards and the DALI/webdataset loaders."""
