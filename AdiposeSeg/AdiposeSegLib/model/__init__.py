"""The networks, model folders and cards, devices, and inference on the model grid."""
