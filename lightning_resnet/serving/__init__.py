"""Sharing a trained model: the HTTP service of ``serve`` (LitServe, :mod:`.api`), the page of ``demo`` (Gradio,
:mod:`.page`), and what both do with an uploaded image before the model sees it (:mod:`.uploads`)."""
