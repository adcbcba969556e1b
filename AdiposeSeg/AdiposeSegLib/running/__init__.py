"""Running the data path: the pipeline, the command line, batches, the child-process run."""
