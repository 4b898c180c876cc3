// Fetch: download, verify and unpack data sets and models, through system libarchive.
import CArchive
