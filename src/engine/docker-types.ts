// What the engine module answers with: plain data about the engine, its containers, images
// and networks, apart from the client that fetches it (docker.ts).
import type Docker from 'dockerode';

export interface EngineVersion {
  version: string;
  apiVersion: string;
  minApiVersion: string | null;
  os: string;
  arch: string;
  kernelVersion: string | null;
}

export interface EngineInfo {
  name: string;
  experimental: boolean;
  storageDriver: string;
  cgroupVersion: string | null;
  dockerRootDir: string;
  containers: number;
  containersRunning: number;
  images: number;
}

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  state: string;
  status: string;
  /** ISO 8601. */
  created: string;
  /** HostConfig.NetworkMode (`container:<id>` for a container in another's network namespace). */
  networkMode: string;
}

export interface ContainerMount {
  type: string;
  /** Volume name (volumes only). */
  name?: string;
  source: string;
  destination: string;
  rw: boolean;
}

/**
 * Everything needed to create an identical twin of a container on another engine: the
 * inspected Config, HostConfig and the networks' endpoint settings (see twinCreateOptions).
 */
export type ContainerCreateOptions = Docker.ContainerCreateOptions;

export interface ContainerDetails {
  id: string;
  name: string;
  /** sha256:... of the container's image (compare it on the destination with imageExists). */
  imageId: string;
  /** The image reference the container was created from (Config.Image). */
  imageName: string;
  running: boolean;
  /** Host PID of the container's init process (0 when not running). */
  pid: number;
  /** overlay2's R/W layer (GraphDriver.Data.UpperDir); null for other storage drivers. */
  upperDir: string | null;
  mounts: ContainerMount[];
  /** IPv4 address per attached network (null while the container is not running). */
  networks: Record<string, string | null>;
  createOptions: ContainerCreateOptions;
}

export interface BridgeNetworkSpec {
  name: string;
  subnet: string;
  gateway: string;
  /** Part of the subnet the engine assigns addresses from (addresses given explicitly may lie outside it). */
  ipRange: string | null;
  /** Outbound NAT of the bridge; off for networks whose addresses are routed to the engine. */
  masquerade: boolean;
  /** Further bridge driver options the network must have (the engine adapter's, e.g. a gateway mode). */
  driverOptions?: Record<string, string>;
}

export interface ImageDetails {
  /** sha256:... (the sha256 of the image config). */
  id: string;
  repoTags: string[];
  /** rootfs diff ids, base first. */
  diffIds: string[];
  size: number;
}

export interface RestartPolicy {
  Name: string;
  MaximumRetryCount?: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}
