import { pageHeading } from './ui.js';
export default { title: 'dlq', render(root) { root.append(pageHeading('dlq')); } };
