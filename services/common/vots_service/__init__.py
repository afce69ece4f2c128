"""Shared by the VOTS services (vots_rag, vots_agent): errors, HTTP guard, logs, serving."""
