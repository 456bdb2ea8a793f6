"""Command line: `python -m core.cli COMMAND`. Acts as a real user (password from
MEDSHIELD_PASSWORD or a prompt), so the same permissions and audit apply as in the app."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from core.crypto.masking import MASKS
from core.errors import MedShieldError


def _login(username: str):
    from core.services import users

    password = os.environ.get("MEDSHIELD_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise MedShieldError("Set MEDSHIELD_PASSWORD or run in a terminal to type the password.")
        password = getpass.getpass(f"Password for {username}: ")
    info = users.authenticate(username, password)
    if info.totp_enabled:  # the second factor: MEDSHIELD_TOTP_CODE, or typed at the prompt
        from core.services import twofactor

        code = os.environ.get("MEDSHIELD_TOTP_CODE")
        if code is None:
            if not sys.stdin.isatty():
                raise MedShieldError("This account signs in with a second factor: set MEDSHIELD_TOTP_CODE or "
                                     "run in a terminal to type the code.")
            code = input(f"Authentication code for {username}: ")
        info = twofactor.verify(username, code)
    return info.actor()


def _cmd_init(args) -> int:
    from core.runtime import get_runtime

    rt = get_runtime()
    print(f"Database ready at {rt.engine.url.render_as_string(hide_password=True)}; data in {rt.settings.data_dir}")
    return 0


def _cmd_ingest(args) -> int:
    from core.services import ingest

    actor = _login(args.user)
    files = []
    for p in args.files:
        path = Path(p)
        if not path.is_file():
            print(f"{p}: rejected: not a file", file=sys.stderr)
            continue
        files.append((path.name, path.read_bytes()))
    report = ingest.ingest_files(actor, files, patient_id=args.patient, modality=args.modality)
    for r in report.results:
        extra = f" image #{r.image_id}" if r.image_id else ""
        print(f"{r.name}: {r.status}{extra}{' - ' + r.reason if r.reason else ''}")
    print(f"{report.accepted} accepted, {report.duplicates} duplicate(s), {report.rejected} rejected")
    return 1 if report.rejected or len(files) < len(args.files) else 0


def _cmd_protect(args) -> int:
    from tqdm import tqdm

    from core.imaging.deid import DeidOptions
    from core.services.protect_batch import gather, protect_paths

    actor = _login(args.user)
    total = len(gather(args.inputs))  # files, after walking folders
    bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True, disable=args.quiet,
               desc="previewing" if args.dry_run else "protecting")

    def progress(done: int, _total: int, name: str) -> None:
        bar.update(done - bar.n)
        bar.set_postfix_str(Path(name).name[-30:])

    report = protect_paths(actor, args.inputs, args.out, dry_run=args.dry_run, mask=args.mask,
                           deid=DeidOptions(retain_dates_shifted=args.retain_dates,
                                            retain_device_identity=args.retain_device),
                           keep_annotations=not args.seal_all, patient_id=args.patient, modality=args.modality,
                           progress=progress)
    bar.close()
    for f in report.files:
        if f.error:
            print(f"{f.name}: {f.status}: {f.error}", file=sys.stderr)
        elif not args.quiet:
            why = ", ".join(sorted({r["reason"].split(":")[0] for r in f.regions})) or "none"
            print(f"{f.name}: {f.status} -> {f.output} ({len(f.regions)} region(s) sealed; why: {why})")
    ok = len(report.files) - report.failed
    print(f"{ok} file(s) {'previewed' if args.dry_run else 'protected'}, {report.failed} failed; "
          f"{report.images_per_s:.2f} images/s, peak RSS {report.peak_rss_mb:.0f} MB; "
          f"report: {Path(args.out) / 'report.json'}")
    return 1 if report.failed else 0


def _cmd_demo(args) -> int:
    from core.services import demo

    actor = _login(args.user)
    if args.remove:
        print(f"demo removed: {demo.remove_demo(actor)} image(s)")
        return 0
    st = demo.load_demo(actor)
    print(f"demo patient #{st.patient_id} with {len(st.image_ids)} image(s): "
          "fake names, IDs and dates burned into public images. Protect them as a technician, restore and "
          "explain them as a doctor; remove with --remove.")
    return 0


def _cmd_migrate_store(args) -> int:
    from core.services import storage_admin

    actor = _login(args.user)
    rep = storage_admin.migrate_store(actor, args.to, progress=lambda d, t: print(f"\r{d}/{t} blobs", end="", flush=True))
    print(f"\n{rep.copied} copied, {rep.already_there} already there, every copy verified: {rep.target}. "
          "Now set MEDSHIELD_BLOB_URL to it.")
    return 0


def _cmd_sweep_store(args) -> int:
    from core.services import storage_admin

    found, removed = storage_admin.sweep_orphans(_login(args.user), args.min_age_minutes, args.dry_run)
    print(f"{found} orphan blob(s) older than {args.min_age_minutes:g} min, {removed} removed")
    return 0


def _cmd_create_user(args) -> int:
    from core.services import users

    actor = _login(args.user)
    new_password = os.environ.get("MEDSHIELD_NEW_PASSWORD") or getpass.getpass("New user's password: ")
    info = users.create_user(actor, args.username, args.name, args.role, new_password, args.email or "")
    print(f"created {info.username} ({info.role}); they must change the password at first login")
    return 0


def _cmd_verify_audit(args) -> int:
    from core.services import audit_log

    rep = audit_log.verify(_login(args.user))
    print(f"chain intact: {rep.checked} events" if rep.ok else f"chain broken at event {rep.first_bad_seq}: {rep.reason}")
    return 0 if rep.ok else 2


def _cmd_rotate_keys(args) -> int:
    from core.services import keys

    actor = _login(args.user)
    rep = keys.rotate_master_key(actor, progress=lambda d, t: print(f"re-wrapped {d}/{t}", flush=True))
    print(f"new master key {rep.new_key_id}: {rep.rewrapped} data keys re-wrapped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.cli", description="MedShield command line")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("init", help="create or migrate the database and the first admin")
    s.set_defaults(fn=_cmd_init)
    s = sub.add_parser("ingest", help="upload images, DICOM or zips as a technician")
    s.add_argument("--user", required=True)
    s.add_argument("--patient", type=int, default=None, help="patient database id")
    s.add_argument("--modality", default=None, help="for PNG/JPEG, e.g. CR, DX, US")
    s.add_argument("files", nargs="+")
    s.set_defaults(fn=_cmd_ingest)
    s = sub.add_parser("protect", help="detect, seal and de-identify files, folders and zips (technician)",
                       description="Ingest each input (files, folders, zips of PNG/JPEG/DICOM), find its burned-in "
                                   "text with both detectors, seal it, de-identify DICOM headers, and write the "
                                   "protected image per input plus report.json to --out.")
    s.add_argument("--user", required=True)
    s.add_argument("--out", required=True, help="output folder (created)")
    s.add_argument("--dry-run", action="store_true", help="write masked previews only; store nothing")
    s.add_argument("--mask", default="solid", choices=list(MASKS))
    s.add_argument("--seal-all", action="store_true", help="seal technical annotation too (kV, L/R, depth...)")
    s.add_argument("--retain-dates", action="store_true", help="DICOM: keep dates, shifted per patient")
    s.add_argument("--retain-device", action="store_true", help="DICOM: keep device identity")
    s.add_argument("--patient", type=int, default=None, help="patient database id for PNG/JPEG inputs")
    s.add_argument("--modality", default=None, help="for PNG/JPEG, e.g. CR, DX, US")
    s.add_argument("--quiet", action="store_true", help="no progress bar, errors only")
    s.add_argument("inputs", nargs="+")
    s.set_defaults(fn=_cmd_protect)
    s = sub.add_parser("demo", help="load (or --remove) the demo patient and images (admin)")
    s.add_argument("--user", required=True)
    s.add_argument("--remove", action="store_true")
    s.set_defaults(fn=_cmd_demo)
    s = sub.add_parser("migrate-store", help="copy the blob store to another (e.g. s3://bucket/prefix), verified (admin)")
    s.add_argument("--user", required=True)
    s.add_argument("--to", required=True, help="file:///path or s3://bucket/prefix (endpoint: MEDSHIELD_S3_ENDPOINT)")
    s.set_defaults(fn=_cmd_migrate_store)
    s = sub.add_parser("sweep-store", help="remove blobs no record points at (admin)")
    s.add_argument("--user", required=True)
    s.add_argument("--min-age-minutes", type=float, default=60)
    s.add_argument("--dry-run", action="store_true")
    s.set_defaults(fn=_cmd_sweep_store)
    s = sub.add_parser("create-user", help="create a user as an admin")
    s.add_argument("--user", required=True, help="the acting admin")
    s.add_argument("username")
    s.add_argument("name")
    s.add_argument("role", choices=["technician", "doctor", "admin"])
    s.add_argument("--email")
    s.set_defaults(fn=_cmd_create_user)
    s = sub.add_parser("verify-audit", help="verify the audit hash chain as an admin")
    s.add_argument("--user", required=True)
    s.set_defaults(fn=_cmd_verify_audit)
    s = sub.add_parser("rotate-keys", help="rotate the master key and re-wrap every data key (admin)")
    s.add_argument("--user", required=True)
    s.set_defaults(fn=_cmd_rotate_keys)
    return p


def main(argv: list[str] | None = None, configure: bool = True) -> int:
    args = build_parser().parse_args(argv)
    if configure:
        from core.runtime import get_runtime

        get_runtime()
    try:
        return args.fn(args)
    except MedShieldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
