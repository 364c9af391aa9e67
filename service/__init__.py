"""ocr-relay: watches Monite OCR tasks and delivers normalized, signed results to callbacks."""
