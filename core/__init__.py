"""MedShield core: all behaviour, importable and testable without Streamlit."""
