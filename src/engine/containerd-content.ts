// Image manifests in the content store of Docker's containerd image store.
//
// On that store an image's id is the digest of its manifest (or index), not of its config,
// and the manifest's bytes are a blob of containerd's content store:
// DATA_ROOT/containerd/daemon/io.containerd.content.v1.content/blobs/sha256/<hex> (read-only
// files, checked on the lab with Docker 28.5.2 / containerd 2.1.9). Overlay synthesis reads the
// base image's manifest there for the sizes and media types of the layers it already has.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ContentDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture?: string; os?: string };
}

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: ContentDescriptor;
  layers: ContentDescriptor[];
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

/** Where the engine's containerd keeps the blob of that digest. */
export function contentBlobPath(dataRoot: string, digest: string): string {
  const m = DIGEST.exec(digest);
  if (!m) throw new Error(`not a sha256 digest: '${digest}'`);
  return join(dataRoot, 'containerd', 'daemon', 'io.containerd.content.v1.content', 'blobs', 'sha256', m[1]!);
}

/**
 * The manifest an image id names on the containerd store (an index is followed to its
 * linux/amd64 manifest, else its first); null when the content store has no such blob.
 */
export async function readImageManifest(dataRoot: string, imageId: string): Promise<ImageManifest | null> {
  for (let digest = imageId, depth = 0; depth < 3; depth++) {
    let doc: { manifests?: ContentDescriptor[]; config?: ContentDescriptor; layers?: ContentDescriptor[] };
    try {
      doc = JSON.parse(await readFile(contentBlobPath(dataRoot, digest), 'utf8')) as typeof doc;
    } catch {
      return null;
    }
    if (doc.config && Array.isArray(doc.layers)) return doc as ImageManifest;
    const next = doc.manifests?.find((m) => m.platform?.architecture === 'amd64' && m.platform.os === 'linux') ?? doc.manifests?.[0];
    if (!next) return null;
    digest = next.digest;
  }
  return null;
}
