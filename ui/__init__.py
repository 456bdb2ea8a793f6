"""Streamlit helpers shared by Home.py and the pages (the only UI code outside pages/)."""
