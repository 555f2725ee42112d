"""The miniature JMP study: pre-trained vs scratch fine-tuning on the mini suite."""
