"""Slicer-side helpers of the PromptRegister module that need MRML and VTK but
no Qt, so they run under the slicer-core wheel outside the Slicer application
(tests, batch use)."""
