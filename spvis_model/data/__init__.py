"""Data for training and testing spvis: datasets, samplers, transforms and the synthetic video
generator (`spvis_model.data.synthetic`, see docs/synthetic.md).

Modules are imported on use, so `import spvis_model.data` stays cheap.
"""
