"""Turning a model from one form into another: torch or a checkpoint -> float ONNX, float ONNX ->
CIM-deployed ONNX (the device graph pass, one handler module per op family).

Import as ``nft_deploy.converters``. The user-facing API is ``nft_deploy.export``.
"""
