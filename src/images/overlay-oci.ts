// Synthesis on Docker's containerd image store (`containerd-snapshotter`).
//
// That store's `docker load` does not skip layers it has: a docker-save archive listing the
// base's layers without their layer.tar fails ("failed to resolve layers: layer .../layer.tar
// not found", checked on the lab). An OCI layout does: containerd imports the blobs the archive
// has and finds the others, by digest, in its content store, where the base's layers already
// are. So the overlay is loaded as an OCI layout: our manifest (config + every layer, base
// first), the config, the overlay's layers, and index.json naming the image.
//
// The manifest is the one containerd itself writes when it imports a docker-save archive
// (docker media types, uncompressed layers whose digests are their diff ids, Go's field order,
// no spaces): the app image loaded from an archive on the source has the same bytes, hence the
// same id, on both cloudlets (checked: sha256:3529fe66... for app-small on two engines).
import { createHash } from 'node:crypto';
import type { ImageManifest } from '../engine/containerd-content.js';
import { ImageError } from './errors.js';
import type { OverlayHeader } from './overlay.js';

/** What an OCI-layout load archive adds to the overlay's artifacts. */
export interface OciLoadParts {
  /** The image manifest's bytes and digest (the image's id on the containerd store). */
  manifest: Buffer;
  manifestDigest: string;
  /** index.json naming the manifest (and the image's name). */
  index: Buffer;
}

const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';
const CONFIG_TYPE = 'application/vnd.docker.container.image.v1+json';
const LAYER_TYPE = 'application/vnd.docker.image.rootfs.diff.tar';
const UNCOMPRESSED = new Set([LAYER_TYPE, 'application/vnd.oci.image.layer.v1.tar']);

/** `docker.io/NAME:TAG` as containerd names images (`library/` for one-part names). */
export function containerdImageName(name: string): { full: string; tag: string } {
  const at = name.lastIndexOf(':');
  const repo = at > name.lastIndexOf('/') ? name.slice(0, at) : name;
  const tag = at > name.lastIndexOf('/') ? name.slice(at + 1) : 'latest';
  const first = repo.split('/')[0]!;
  const domain = repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  const path = domain ? repo : repo.includes('/') ? `docker.io/${repo}` : `docker.io/library/${repo}`;
  return { full: `${path}:${tag}`, tag };
}

/**
 * The OCI parts of the app image's load archive: its manifest (every layer, the base's sizes
 * read from the base's manifest here) and index.json. A base layer stored compressed here
 * cannot be named by its diff id: refused, naming the layer.
 */
export function ociPartsFor(header: OverlayHeader, baseManifest: ImageManifest): OciLoadParts {
  const overlay = new Map(header.layers.map((l) => [l.diffId, l.size]));
  const base = new Map(baseManifest.layers.filter((l) => UNCOMPRESSED.has(l.mediaType)).map((l) => [l.digest, l.size]));
  const layers = header.app.diffIds.map((diffId) => {
    const size = overlay.get(diffId) ?? base.get(diffId);
    if (size === undefined) {
      throw new ImageError('image_format', `layer ${diffId} of the app is neither in the overlay nor an uncompressed layer of the base image here`, {
        context: { diffId, base: header.base.imageId },
      });
    }
    return { mediaType: LAYER_TYPE, digest: diffId, size };
  });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_TYPE,
      config: { mediaType: CONFIG_TYPE, digest: header.app.imageId, size: header.app.configBytes },
      layers,
    }),
  );
  const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const named = header.app.name ? containerdImageName(header.app.name) : null;
  const entry = {
    mediaType: MANIFEST_TYPE,
    digest: manifestDigest,
    size: manifest.length,
    ...(named ? { annotations: { 'io.containerd.image.name': named.full, 'org.opencontainers.image.ref.name': named.tag } } : {}),
  };
  return { manifest, manifestDigest, index: Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [entry] })) };
}
