"""Perception: the element layer a policy chooses among (text read by pretrained OCR, non-text shapes)."""
