type Props = {
  read id: number,
  write name: string;
  tag?: string,
  [number]: boolean,
  read: number,
}
