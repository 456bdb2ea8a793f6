import numpy as np
import streamlit as st

from core.imaging.display import to_display_uint8
from core.services import restore
from ui.common import actor, attempt, image_choices
from ui.navigation import guard

st.header("Restore")
me = guard("restore")
st.caption("Decrypts the sealed regions of a protected image and proves the result pixel-exact "
           "against the SHA-256 taken at upload. Every restore and download is audited.")

labels = image_choices(me, "protected", "No protected image yet.")
info = labels[st.selectbox("Image", list(labels), key="restore_pick")]

held = st.session_state.get("restored")
if held is not None and held.image_id != info.id:
    st.session_state.pop("restored", None)
    held = None
if held is None and st.button("Restore original", type="primary"):
    held = attempt(restore.restore_image, me, info.id)
    if held is not None:
        st.session_state["restored"] = held

if held is not None:
    st.success(f"Verified: the restored pixels match the SHA-256 taken at upload "
               f"({len(held.regions)} region(s) opened).")
    frame = st.number_input("Frame", 0, held.frames - 1, 0) if held.frames > 1 else 0
    show_diff = st.toggle("Show difference", key="restore_diff")
    original = to_display_uint8(held.pixels, photometric=held.photometric, frames=held.frames, frame=frame)
    masked = to_display_uint8(held.protected, photometric=held.photometric, frames=held.frames, frame=frame)
    a, b = st.columns(2)
    a.image(original, caption="Original (restored)", width="stretch")
    if show_diff:
        diff = np.abs(original.astype(np.int16) - masked.astype(np.int16)).astype(np.uint8)
        b.image(diff, caption="Difference: only the sealed regions", width="stretch", clamp=True)
    else:
        b.image(masked, caption="Protected (as shared)", width="stretch")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download PNG" if held.png_is_lossless else "Download PNG (8-bit view)", held.png_bytes(), f"image-{info.id}.png", "image/png",
                       on_click=restore.record_download, args=(actor(), info.id, "png"), width="stretch")
    c2.download_button("Download JPEG", held.jpeg_bytes(), f"image-{info.id}.jpg", "image/jpeg",
                       on_click=restore.record_download, args=(actor(), info.id, "jpeg"), width="stretch")
    if held.dicom_bytes is not None:
        c3.download_button("Download original DICOM", held.dicom_bytes, f"image-{info.id}.dcm",
                           "application/dicom", on_click=restore.record_download,
                           args=(actor(), info.id, "dicom"), width="stretch")

    with st.expander("Share with a colleague (X25519 package)"):
        st.caption("The package holds the protected image, the sealed regions and this image's key "
                   "wrapped to the recipient's public key. They restore it offline with "
                   "`python -m core.share_cli open FILE --key THEIR.key --out original.png`.")
        pub = st.text_input("Recipient's public key", key="share_pub", placeholder="msx25519-public:…")
        if pub and st.button("Prepare package"):
            got = attempt(restore.export_share, me, info.id, pub)
            if got:
                st.session_state["share_pkg"] = (info.id, *got)
        pkg = st.session_state.get("share_pkg")
        if pkg and pkg[0] == info.id:
            st.download_button("Download share package", pkg[2], pkg[1], "application/json")
